//! Finding the config field at a place in TOML text, for errors toml reports by
//! position only (an unknown field, a malformed value). Pure; reads nothing.

/// The dotted path (`partner[1].clearence`) of the key or value at a 1-based line and
/// byte column of a TOML text, when the text is well-formed TOML.
pub fn field_at(text: &str, line: usize, column: usize) -> Option<String> {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.checked_sub(1)?)
        .map(str::len)
        .sum();
    let offset = line_start + column.checked_sub(1)?;
    let doc = toml_edit::Document::parse(text).ok()?;
    let root = doc.as_table();
    locate_in_table(root, root.span(), "", offset)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn covers(span: Option<std::ops::Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.contains(&offset) || (s.is_empty() && s.start == offset))
}

/// The field at `offset` among the entries of a table, inline or not, or the table
/// itself when only its span covers it.
fn locate_in_table(
    t: &dyn toml_edit::TableLike,
    span: Option<std::ops::Range<usize>>,
    path: &str,
    offset: usize,
) -> Option<String> {
    for (name, _) in t.iter() {
        let Some((key, item)) = t.get_key_value(name) else {
            continue;
        };
        let here = join(path, name);
        if let Some(deeper) = locate_item(item, &here, offset) {
            return Some(deeper);
        }
        if covers(key.span(), offset) {
            return Some(here);
        }
    }
    covers(span, offset).then(|| path.to_owned())
}

fn locate_item(item: &toml_edit::Item, path: &str, offset: usize) -> Option<String> {
    match item {
        toml_edit::Item::None => None,
        toml_edit::Item::Table(t) => locate_in_table(t, t.span(), path, offset),
        toml_edit::Item::ArrayOfTables(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, t)| locate_in_table(t, t.span(), &format!("{path}[{i}]"), offset))
            .filter(|p| !p.is_empty()),
        toml_edit::Item::Value(v) => locate_value(v, path, offset),
    }
}

fn locate_value(v: &toml_edit::Value, path: &str, offset: usize) -> Option<String> {
    match v {
        toml_edit::Value::Array(a) => {
            let inner = a
                .iter()
                .enumerate()
                .find_map(|(i, e)| locate_value(e, &format!("{path}[{i}]"), offset));
            inner.or_else(|| covers(a.span(), offset).then(|| path.to_owned()))
        }
        toml_edit::Value::InlineTable(t) => locate_in_table(t, t.span(), path, offset),
        other => covers(other.span(), offset).then(|| path.to_owned()),
    }
}
