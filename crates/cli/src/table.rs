//! The CLI's tables (comfy-table): columns as wide as their widest cell, two spaces
//! apart, a header in capitals, no borders, nothing wrapped, no trailing spaces, so
//! that output read by scripts splits on whitespace as before and long names never
//! push columns out of line.

use comfy_table::{CellAlignment, ContentArrangement, TableComponent};

/// A table being filled.
pub struct Table {
    inner: comfy_table::Table,
}

impl Table {
    /// A table with these column headers.
    pub fn new(header: &[&str]) -> Table {
        let mut inner = comfy_table::Table::new();
        inner
            .load_preset(comfy_table::presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(header.to_vec());
        for component in [
            TableComponent::LeftBorder,
            TableComponent::RightBorder,
            TableComponent::TopBorder,
            TableComponent::BottomBorder,
            TableComponent::HeaderLines,
            TableComponent::LeftHeaderIntersection,
            TableComponent::RightHeaderIntersection,
            TableComponent::MiddleHeaderIntersections,
            TableComponent::VerticalLines,
            TableComponent::HorizontalLines,
        ] {
            inner.remove_style(component);
        }
        Table { inner }
    }

    /// Right-align these columns (numbers).
    pub fn right(mut self, columns: &[usize]) -> Table {
        for (i, column) in self.inner.column_iter_mut().enumerate() {
            if columns.contains(&i) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        self
    }

    /// Add a row.
    pub fn row<I, T>(&mut self, cells: I)
    where
        I: IntoIterator<Item = T>,
        T: ToString,
    {
        self.inner
            .add_row(cells.into_iter().map(|c| c.to_string()).collect::<Vec<_>>());
    }

    /// The table as text, one line per row, each ending in a newline.
    pub fn render(mut self) -> String {
        let last = self.inner.column_count().saturating_sub(1);
        for (i, column) in self.inner.column_iter_mut().enumerate() {
            column.set_padding((0, if i == last { 0 } else { 2 }));
        }
        let mut text = String::new();
        for line in self.inner.lines() {
            let line = line.trim_end();
            if !line.is_empty() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_whatever_the_width_of_a_cell() {
        let mut t = Table::new(&["NODE", "STATE", "EXIT"]).right(&[2]);
        t.row(["a-very-long-node-name", "done", "0"]);
        t.row(["b", "timeout", "124"]);
        assert_eq!(
            t.render(),
            "NODE                   STATE    EXIT\n\
             a-very-long-node-name  done        0\n\
             b                      timeout   124\n"
        );
    }

    #[test]
    fn an_empty_table_is_its_header() {
        assert_eq!(Table::new(&["ID", "NAME"]).render(), "ID  NAME\n");
    }
}
