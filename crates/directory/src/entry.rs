//! Search result entries, decoded without panicking.
//!
//! ldap3's `SearchEntry::construct` panics on an entry it cannot decode; a directory that
//! sends garbage must cost one `Protocol` error instead, so entries are decoded here.

use std::collections::HashMap;

use ldap3::asn1::{StructureTag, PL};

/// One entry: its DN and attribute values, keyed by the lower-cased attribute description
/// as the server sent it (`member;range=0-1499` included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    attrs: HashMap<String, Vec<Vec<u8>>>,
}

impl Entry {
    /// Decodes a SearchResultEntry (`[APPLICATION 4]`); `Err` names what was malformed.
    pub(crate) fn decode(tag: StructureTag) -> Result<Self, &'static str> {
        if tag.id != 4 {
            return Err("not a search result entry");
        }
        let mut parts = constructed(tag, "entry")?.into_iter();
        let dn = text(
            primitive(parts.next().ok_or("entry without DN")?, "DN")?,
            "DN",
        )?;
        let mut attrs: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        let list = constructed(
            parts.next().ok_or("entry without attribute list")?,
            "attributes",
        )?;
        for attribute in list {
            let mut pair = constructed(attribute, "attribute")?.into_iter();
            let name = pair.next().ok_or("attribute without type")?;
            let name = text(primitive(name, "attribute type")?, "attribute type")?;
            let values = constructed(pair.next().ok_or("attribute without values")?, "values")?;
            let slot = attrs.entry(name.to_ascii_lowercase()).or_default();
            for value in values {
                slot.push(primitive(value, "attribute value")?);
            }
        }
        Ok(Self { dn, attrs })
    }

    /// The values of `attr` that are UTF-8 text.
    pub fn text(&self, attr: &str) -> Vec<&str> {
        self.bytes(attr)
            .iter()
            .filter_map(|v| std::str::from_utf8(v).ok())
            .collect()
    }

    /// The first text value of `attr`.
    pub fn first(&self, attr: &str) -> Option<&str> {
        self.text(attr).into_iter().next()
    }

    /// Raw values of `attr` (binary attributes such as `objectGUID`).
    pub fn bytes(&self, attr: &str) -> &[Vec<u8>] {
        self.attrs
            .get(&attr.to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Attribute descriptions present, lower-cased.
    pub fn attribute_names(&self) -> impl Iterator<Item = &str> {
        self.attrs.keys().map(String::as_str)
    }

    #[cfg(test)]
    pub(crate) fn for_test(dn: &str, attrs: &[(&str, &[&str])]) -> Self {
        Self {
            dn: dn.to_string(),
            attrs: attrs
                .iter()
                .map(|(k, vs)| {
                    let values = vs.iter().map(|v| v.as_bytes().to_vec()).collect();
                    (k.to_ascii_lowercase(), values)
                })
                .collect(),
        }
    }
}

fn constructed(tag: StructureTag, what: &'static str) -> Result<Vec<StructureTag>, &'static str> {
    match tag.payload {
        PL::C(children) => Ok(children),
        PL::P(_) => Err(what),
    }
}

fn primitive(tag: StructureTag, what: &'static str) -> Result<Vec<u8>, &'static str> {
    match tag.payload {
        PL::P(bytes) => Ok(bytes),
        PL::C(_) => Err(what),
    }
}

fn text(bytes: Vec<u8>, what: &'static str) -> Result<String, &'static str> {
    String::from_utf8(bytes).map_err(|_| what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3::asn1::TagClass;

    fn prim(id: u64, bytes: &[u8]) -> StructureTag {
        StructureTag {
            class: TagClass::Universal,
            id,
            payload: PL::P(bytes.to_vec()),
        }
    }

    fn cons(class: TagClass, id: u64, children: Vec<StructureTag>) -> StructureTag {
        StructureTag {
            class,
            id,
            payload: PL::C(children),
        }
    }

    #[test]
    fn decodes_an_entry_with_binary_and_ranged_attributes() {
        let tag = cons(
            TagClass::Application,
            4,
            vec![
                prim(4, b"CN=PS-Users,DC=example,DC=eng"),
                cons(
                    TagClass::Universal,
                    16,
                    vec![
                        cons(
                            TagClass::Universal,
                            16,
                            vec![
                                prim(4, b"objectGUID"),
                                cons(TagClass::Universal, 17, vec![prim(4, &[0xff, 0x00, 0x10])]),
                            ],
                        ),
                        cons(
                            TagClass::Universal,
                            16,
                            vec![
                                prim(4, b"member;range=0-1499"),
                                cons(
                                    TagClass::Universal,
                                    17,
                                    vec![prim(4, b"CN=a"), prim(4, b"CN=b")],
                                ),
                            ],
                        ),
                    ],
                ),
            ],
        );
        let entry = Entry::decode(tag).unwrap();
        assert_eq!(entry.dn, "CN=PS-Users,DC=example,DC=eng");
        assert_eq!(entry.bytes("OBJECTGUID"), &[vec![0xff, 0x00, 0x10]]);
        assert_eq!(entry.text("member;range=0-1499"), ["CN=a", "CN=b"]);
        assert!(
            entry.text("objectGUID").is_empty(),
            "binary values are not text"
        );
    }

    #[test]
    fn malformed_entries_are_errors_not_panics() {
        let cases = [
            prim(4, b"flat"),
            cons(TagClass::Application, 4, vec![]),
            cons(TagClass::Application, 4, vec![prim(4, &[0xff, 0xfe])]),
            cons(
                TagClass::Application,
                4,
                vec![prim(4, b"CN=x"), prim(4, b"not a list")],
            ),
            cons(
                TagClass::Application,
                4,
                vec![
                    prim(4, b"CN=x"),
                    cons(
                        TagClass::Universal,
                        16,
                        vec![cons(TagClass::Universal, 16, vec![])],
                    ),
                ],
            ),
        ];
        for tag in cases {
            assert!(Entry::decode(tag).is_err());
        }
    }
}
