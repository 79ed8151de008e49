//! Chat-template rendering with minijinja.
//!
//! GGUF files carry the Hugging Face Jinja chat template in `tokenizer.chat_template`. We render it the way
//! `transformers.apply_chat_template` does: `trim_blocks` and `lstrip_blocks` on, the variables `messages`,
//! `add_generation_prompt`, `bos_token` and `eos_token`, the `raise_exception` and `strftime_now` helpers,
//! `tojson` (minijinja's), and the Python string/dict methods templates commonly call (`strip`, `split`,
//! `startswith`, `items`, …) through an unknown-method callback. It is not a full Jinja2/Python emulation
//! (no `{% break %}`/`{% continue %}` loop controls; tools and multimodal content are not passed in).

use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind, State};
use serde::Serialize;

use super::TokenizerError;

/// One chat turn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

pub(crate) fn render(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String, TokenizerError> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_function("strftime_now", |fmt: String| -> String {
        strftime_now(&fmt)
    });
    env.set_unknown_method_callback(python_methods);
    let tmpl = env
        .template_from_str(template)
        .map_err(|e| TokenizerError::Template(describe(&e)))?;
    tmpl.render(minijinja::context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token,
        eos_token => eos_token,
    })
    .map_err(|e| TokenizerError::Template(describe(&e)))
}

fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// A minimal `strftime` for the formats templates use (`%d %b %Y`, `%Y-%m-%d`), in UTC.
fn strftime_now(fmt: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86_400);
    // Civil-from-days (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('b') => out.push_str(&name[..3]),
            Some('B') => out.push_str(name),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

fn str_arg(args: &[Value], i: usize) -> Result<Option<String>, Error> {
    match args.get(i) {
        None => Ok(None),
        Some(v) if v.is_none() || v.is_undefined() => Ok(None),
        Some(v) => v.as_str().map(|s| Some(s.to_owned())).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("expected a string argument, got {v}"),
            )
        }),
    }
}

/// Python `str` and `dict` methods that Hugging Face templates call.
fn python_methods(
    _state: &State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if let Some(s) = value.as_str() {
        let chars = str_arg(args, 0)?;
        let trim_set = |c: char| match &chars {
            Some(set) => set.contains(c),
            None => c.is_whitespace(),
        };
        return Ok(match method {
            "strip" => Value::from(s.trim_matches(trim_set)),
            "lstrip" => Value::from(s.trim_start_matches(trim_set)),
            "rstrip" => Value::from(s.trim_end_matches(trim_set)),
            "upper" => Value::from(s.to_uppercase()),
            "lower" => Value::from(s.to_lowercase()),
            "startswith" => Value::from(s.starts_with(chars.as_deref().unwrap_or(""))),
            "endswith" => Value::from(s.ends_with(chars.as_deref().unwrap_or(""))),
            "replace" => {
                let to = str_arg(args, 1)?.unwrap_or_default();
                Value::from(s.replace(chars.as_deref().unwrap_or(""), &to))
            }
            "split" => match chars {
                Some(sep) if !sep.is_empty() => {
                    Value::from(s.split(sep.as_str()).map(Value::from).collect::<Vec<_>>())
                }
                _ => Value::from(s.split_whitespace().map(Value::from).collect::<Vec<_>>()),
            },
            "title" => Value::from(title_case(s)),
            "capitalize" => {
                let mut c = s.chars();
                Value::from(match c.next() {
                    Some(f) => f
                        .to_uppercase()
                        .chain(c.flat_map(char::to_lowercase))
                        .collect(),
                    None => String::new(),
                })
            }
            "find" => Value::from(
                s.find(chars.as_deref().unwrap_or(""))
                    .map(|b| s[..b].chars().count() as i64)
                    .unwrap_or(-1),
            ),
            _ => return Err(Error::from(ErrorKind::UnknownMethod)),
        });
    }
    if value.kind() == minijinja::value::ValueKind::Map {
        let keys: Vec<Value> = value.try_iter()?.collect();
        return Ok(match method {
            "keys" => Value::from(keys),
            "values" => Value::from(
                keys.iter()
                    .map(|k| value.get_item(k))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            "items" => Value::from(
                keys.into_iter()
                    .map(|k| Ok(Value::from(vec![k.clone(), value.get_item(&k)?])))
                    .collect::<Result<Vec<_>, Error>>()?,
            ),
            "get" => {
                let key = args.first().cloned().unwrap_or(Value::UNDEFINED);
                let v = value.get_item(&key)?;
                if v.is_undefined() {
                    args.get(1).cloned().unwrap_or(Value::from(()))
                } else {
                    v
                }
            }
            _ => return Err(Error::from(ErrorKind::UnknownMethod)),
        });
    }
    Err(Error::from(ErrorKind::UnknownMethod))
}

fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_alpha = false;
    for c in s.chars() {
        if prev_alpha {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        prev_alpha = c.is_alphabetic();
    }
    out
}
