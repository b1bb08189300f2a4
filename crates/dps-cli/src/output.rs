//! `--output json|table`.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Output {
    #[default]
    Json,
    Table,
}

/// Prints `v` as pretty JSON, or as a table with the given columns (JSON pointers into each row).
pub fn print<T: Serialize>(out: Output, v: &T, columns: &[(&str, &str)]) {
    let value = serde_json::to_value(v).unwrap_or(Value::Null);
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default()),
        Output::Table => {
            let rows: Vec<Value> = match value {
                Value::Array(a) => a,
                other => vec![other],
            };
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    columns
                        .iter()
                        .map(|(_, ptr)| match r.pointer(ptr) {
                            None | Some(Value::Null) => String::new(),
                            Some(Value::String(s)) => s.clone(),
                            Some(other) => other.to_string(),
                        })
                        .collect()
                })
                .collect();
            let widths: Vec<usize> = columns
                .iter()
                .enumerate()
                .map(|(i, (h, _))| cells.iter().map(|c| c[i].chars().count()).max().unwrap_or(0).max(h.len()))
                .collect();
            let line = |c: Vec<String>| c.iter().enumerate().map(|(i, s)| format!("{s:<w$}", w = widths[i])).collect::<Vec<_>>().join("  ");
            println!("{}", line(columns.iter().map(|(h, _)| (*h).to_owned()).collect()).trim_end());
            println!("{}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
            for c in cells {
                println!("{}", line(c).trim_end());
            }
        }
    }
}
