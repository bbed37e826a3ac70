//! Plain-text columns sized to their widest cell, so long server names and port lists
//! never push a row out of line.

/// Rows of cells under a header; every row has as many cells as the header.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// Between two columns.
const GAP: &str = "  ";

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    /// The header and rows, one line each, columns padded to the widest cell; the last
    /// column is not padded (no trailing blanks).
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let last = row.len().saturating_sub(1);
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                out.push_str(cell);
                if i < last {
                    out.push_str(&" ".repeat(w - width(cell)));
                    out.push_str(GAP);
                }
            }
            out.push('\n');
        }
        out
    }
}

/// Columns a cell takes on a terminal: one per character (names and ports are ASCII;
/// anything else at least does not split a character).
fn width(cell: &str) -> usize {
    cell.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_under_the_widest_cell() {
        let mut t = Table::new(&["SERVER", "PORTS", "HEALTHY"]);
        t.row(vec!["a".into(), "443, 80".into(), "yes".into()]);
        t.row(vec![
            "a-very-long-server-name-indeed".into(),
            "7001".into(),
            "NO".into(),
        ]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        let col = |line: &str, needle: &str| line.find(needle).unwrap();
        assert_eq!(col(lines[0], "PORTS"), col(lines[1], "443"));
        assert_eq!(col(lines[0], "PORTS"), col(lines[2], "7001"));
        assert_eq!(col(lines[0], "HEALTHY"), col(lines[1], "yes"));
        assert_eq!(col(lines[0], "HEALTHY"), col(lines[2], "NO"));
        assert!(lines.iter().all(|l| !l.ends_with(' ')), "{text}");
    }
}
