//! The Django template syntax PXE Manager's test scripts may hold that Jinja writes
//! differently, translated before rendering (one line stays one line, so errors keep their
//! line numbers):
//! - filter arguments: `{{ x|default:"none" }}` → `{{ x|default("none") }}`;
//! - `{% ifequal a b %}`, `{% ifnotequal a b %}` and their `end` tags → `{% if a == b %}`,
//!   `{% if a != b %}`, `{% endif %}`;
//! - `forloop.counter`, `counter0`, `revcounter`, `revcounter0`, `first`, `last` →
//!   `loop.index`, `index0`, `revindex`, `revindex0`, `first`, `last`.
//!
//! Everything else (`{{ var }}`, `{% if %}`, `{% for %}`, `{% include %}`) is the same in
//! both languages. Pure text to text.

/// Translates a template's Django-only syntax to Jinja's.
pub fn translate(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let close = if rest.starts_with("{{") {
            "}}"
        } else if rest.starts_with("{%") {
            "%}"
        } else if rest.starts_with("{#") {
            "#}"
        } else {
            out.push('{');
            rest = &rest[1..];
            continue;
        };
        let Some(end) = rest[2..].find(close).map(|e| e + 2) else {
            break;
        };
        let inner = &rest[2..end];
        out.push_str(&rest[..2]);
        match close {
            "}}" => out.push_str(&expression(inner)),
            "%}" => out.push_str(&tag(inner)),
            _ => out.push_str(inner),
        }
        out.push_str(close);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// A `{% ... %}` tag's content.
fn tag(inner: &str) -> String {
    let (lead, body, trail) = trim_markers(inner);
    let words = split_words(body);
    let newlines = "\n".repeat(body.matches('\n').count());
    let translated = match words.first().map(String::as_str) {
        Some("ifequal") if words.len() == 3 => Some(format!(
            " if {} == {} ",
            expression(&words[1]),
            expression(&words[2])
        )),
        Some("ifnotequal") if words.len() == 3 => Some(format!(
            " if {} != {} ",
            expression(&words[1]),
            expression(&words[2])
        )),
        Some("endifequal" | "endifnotequal") if words.len() == 1 => Some(" endif ".to_owned()),
        _ => None,
    };
    match translated {
        Some(t) => format!("{lead}{t}{newlines}{trail}"),
        None => format!("{lead}{}{trail}", expression(body)),
    }
}

/// Splits off Jinja's whitespace-control markers (`-`, `+`) at both ends.
fn trim_markers(inner: &str) -> (&str, &str, &str) {
    let lead = if inner.starts_with(['-', '+']) {
        &inner[..1]
    } else {
        ""
    };
    let inner = &inner[lead.len()..];
    let trail = if inner.ends_with(['-', '+']) {
        &inner[inner.len() - 1..]
    } else {
        ""
    };
    (lead, &inner[..inner.len() - trail.len()], trail)
}

/// Words separated by blanks, quoted strings kept whole.
fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    for c in s.chars() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                cur.push(c);
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            None => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// An expression: `|filter:arg` becomes `|filter(arg)`, `forloop.x` becomes `loop.y`.
fn expression(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 8);
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' {
            quote = Some(c);
            out.push(c);
            i += 1;
            continue;
        }
        if c == '|' {
            // `|name:arg`?
            let mut j = i + 1;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            let name_start = j;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            if j > name_start && j < chars.len() && chars[j] == ':' {
                out.extend(&chars[i..j]);
                out.push('(');
                j += 1;
                let arg_start = j;
                if j < chars.len() && (chars[j] == '"' || chars[j] == '\'') {
                    let q = chars[j];
                    j += 1;
                    while j < chars.len() && chars[j] != q {
                        j += 1;
                    }
                    j = (j + 1).min(chars.len());
                } else {
                    while j < chars.len() && !chars[j].is_whitespace() && chars[j] != '|' {
                        j += 1;
                    }
                }
                let arg: String = chars[arg_start..j].iter().collect();
                out.push_str(&forloop(&arg));
                out.push(')');
                i = j;
                continue;
            }
        }
        // Copy an unquoted run up to the next quote or bar, with forloop renamed.
        let mut j = i;
        while j < chars.len() && !matches!(chars[j], '"' | '\'' | '|') {
            j += 1;
        }
        if j == i {
            out.push(c);
            i += 1;
        } else {
            let run: String = chars[i..j].iter().collect();
            out.push_str(&forloop(&run));
            i = j;
        }
    }
    out
}

fn forloop(s: &str) -> String {
    if !s.contains("forloop.") {
        return s.to_owned();
    }
    s.replace("forloop.counter0", "loop.index0")
        .replace("forloop.counter", "loop.index")
        .replace("forloop.revcounter0", "loop.revindex0")
        .replace("forloop.revcounter", "loop.revindex")
        .replace("forloop.", "loop.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn django_only_syntax_becomes_jinja_and_the_rest_stays() {
        let cases = [
            ("{{ x|default:\"none\" }}", "{{ x|default(\"none\") }}"),
            (
                "{{ x|default:'a b'|upper }}",
                "{{ x|default('a b')|upper }}",
            ),
            ("{{ n|add:2 }}", "{{ n|add(2) }}"),
            (
                "{% ifequal system 'node1' %}a{% endifequal %}",
                "{% if system == 'node1' %}a{% endif %}",
            ),
            (
                "{%- ifnotequal a \"x y\" -%}b{% endifnotequal %}",
                "{%- if a != \"x y\" -%}b{% endif %}",
            ),
            (
                "{% for m in macs %}{{ forloop.counter }}{% endfor %}",
                "{% for m in macs %}{{ loop.index }}{% endfor %}",
            ),
            ("{% if forloop.first %}", "{% if loop.first %}"),
            (
                "{{ 'a|b:c' }} {# x|y:z #} ${HOME} {x}",
                "{{ 'a|b:c' }} {# x|y:z #} ${HOME} {x}",
            ),
            (
                "{{ x[1:2] }} {{ d|join(', ') }}",
                "{{ x[1:2] }} {{ d|join(', ') }}",
            ),
            ("unclosed {{ x", "unclosed {{ x"),
        ];
        for (django, jinja) in cases {
            assert_eq!(translate(django), jinja, "{django}");
        }
    }

    #[test]
    fn lines_stay_where_they_were() {
        let src = "a\n{% ifequal\n x 1 %}\nb {{ y|default:\"\n\" }}\n";
        let out = translate(src);
        assert_eq!(out.matches('\n').count(), src.matches('\n').count());
    }
}
