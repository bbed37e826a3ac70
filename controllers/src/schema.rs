//! JSON Schemas of the status fields whose types carry none of their own (`time`'s
//! `OffsetDateTime`), for the OpenAPI document. The daemon's OpenAPI test checks real responses against
//! them, so they cannot drift from what is served unnoticed.

use schemars::{json_schema, Schema, SchemaGenerator};

pub(crate) fn date_time(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "format": "date-time"})
}

pub(crate) fn optional_date_time(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": ["string", "null"], "format": "date-time"})
}
