//! How the commands print records: JSON (the default, for scripts) or a
//! table (for people).

use serde::Serialize;
use serde_json::Value;

/// `--format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Pretty-printed JSON, what the API answered.
    #[default]
    Json,
    /// Aligned columns (a list) or `field: value` lines (one record).
    Table,
}

/// Prints `value` as `format` says.
pub fn print<T: Serialize>(value: &T, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Format::Table => print!("{}", table(&serde_json::to_value(value)?)),
    }
    Ok(())
}

/// Widest column shown, in characters; longer values are cut with `…`.
const MAX_WIDTH: usize = 64;

/// `value` as text: a list of records as columns (the first record's
/// fields, in alphabetical order), one record as `field: value` lines,
/// anything else as itself.
pub fn table(value: &Value) -> String {
    match value {
        Value::Array(rows) if rows.iter().all(Value::is_object) => {
            if rows.is_empty() {
                return "(none)\n".into();
            }
            let columns: Vec<String> = rows[0]
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|row| columns.iter().map(|c| cell(row.get(c))).collect())
                .collect();
            let widths: Vec<usize> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    cells
                        .iter()
                        .map(|r| r[i].chars().count())
                        .chain([c.chars().count()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |values: &[String]| {
                let padded: Vec<String> = values
                    .iter()
                    .zip(&widths)
                    .map(|(v, w)| format!("{v:<w$}"))
                    .collect();
                format!("{}\n", padded.join("  ").trim_end())
            };
            let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
            let mut out = line(&header);
            for row in &cells {
                out.push_str(&line(row));
            }
            out
        }
        Value::Object(fields) => {
            let width = fields.keys().map(|k| k.chars().count()).max().unwrap_or(0) + 1;
            fields
                .iter()
                .map(|(k, v)| format!("{:<width$} {}\n", format!("{k}:"), cell(Some(v))))
                .collect()
        }
        other => format!("{}\n", cell(Some(other))),
    }
}

/// One value in a cell: scalars as they are, a list of scalars joined, a
/// list of records counted, a record as compact JSON; `-` when absent.
fn cell(value: Option<&Value>) -> String {
    let text = match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            if items.is_empty() {
                "-".to_owned()
            } else {
                items
                    .iter()
                    .map(|i| cell(Some(i)))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        }
        Some(Value::Array(items)) => format!("{} item(s)", items.len()),
        Some(other) => other.to_string(),
    };
    // One line per record, whatever a value holds.
    let text = text.replace(['\n', '\r', '\t'], " ");
    if text.chars().count() > MAX_WIDTH {
        let cut: String = text.chars().take(MAX_WIDTH - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_list_is_columns_and_a_record_is_lines() {
        let list = json!([
            {"id": 7, "scope": "pay:write", "target": null, "serials": ["a", "b"]},
            {"id": 12, "scope": "read", "target": "acme/prod", "serials": []},
        ]);
        assert_eq!(
            table(&list),
            "ID  SCOPE      SERIALS  TARGET\n\
             7   pay:write  a b      -\n\
             12  read       -        acme/prod\n"
        );
        let one = json!({"version": 2, "certs": [{"serial": "x"}], "actor": {"kind": "admin"}});
        assert_eq!(
            table(&one),
            "actor:   {\"kind\":\"admin\"}\ncerts:   1 item(s)\nversion: 2\n"
        );
        assert_eq!(table(&json!([])), "(none)\n");
        let long = "x".repeat(100);
        assert_eq!(cell(Some(&json!(long))).chars().count(), MAX_WIDTH);
        assert_eq!(cell(Some(&json!("two\nlines"))), "two lines");
    }
}
