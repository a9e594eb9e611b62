//! The JSON Canonicalization Scheme (RFC 8785), as `eddsa-jcs-2022`
//! proofs hash documents: object members sorted by their names' UTF-16
//! code units, no whitespace, strings escaped minimally, numbers written as
//! ECMAScript's `Number.prototype.toString` writes them. Pure.
//!
//! Written here (about 80 lines) rather than taken from a crate: serde_json
//! already gives the string escaping RFC 8785 asks for, and what remains is
//! the member order and the number format, both tested below against the
//! RFC's examples.

use std::fmt::Write as _;

use serde_json::Value;

/// The canonical text of `value`.
pub fn canonicalize(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else {
                out.push_str(&es_number(n.as_f64().unwrap_or(0.0)));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_value(v, out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    // serde_json escapes `"`, `\` and control characters (the short forms
    // \b \t \n \f \r, else \u00xx in lower case) and nothing else: exactly
    // RFC 8785 section 3.2.2.2.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// A finite double as ECMAScript writes it (RFC 8785 section 3.2.2.3).
fn es_number(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return "0".to_owned();
    }
    // Rust's `{:e}` gives the shortest round-trip digits, as ECMAScript
    // requires: `d.ddde±x`.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let k = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    let n = exp.parse::<i32>().unwrap_or(0) + 1;
    let mut s = String::new();
    if x < 0.0 {
        s.push('-');
    }
    let zeros = |c: i32| "0".repeat(usize::try_from(c).unwrap_or(0));
    if k <= n && n <= 21 {
        s.push_str(&digits);
        s.push_str(&zeros(n - k));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(usize::try_from(n).unwrap_or(0));
        let _ = write!(s, "{int}.{frac}");
    } else if -6 < n && n <= 0 {
        let _ = write!(s, "0.{}{digits}", zeros(-n));
    } else {
        let (first, rest) = digits.split_at(1);
        s.push_str(first);
        if !rest.is_empty() {
            let _ = write!(s, ".{rest}");
        }
        let e = n - 1;
        let _ = write!(s, "e{}{}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_ecmascript_does() {
        // RFC 8785 appendix B examples.
        let cases = [
            (0.0, "0"),
            (1e-7, "1e-7"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (333_333_333.333_333_3, "333333333.3333333"),
            (9.007_199_254_740_992e15, "9007199254740992"),
            (4.5, "4.5"),
            (0.002, "0.002"),
            (-71.184902, "-71.184902"),
            (1.5e-7, "1.5e-7"),
            (5e-324, "5e-324"),
            (1.797_693_134_862_315_7e308, "1.7976931348623157e+308"),
        ];
        for (x, want) in cases {
            assert_eq!(es_number(x), want, "{x:e}");
        }
    }

    #[test]
    fn members_sort_by_utf16_and_strings_escape_minimally() {
        // The RFC 8785 section 3.2.3 sorting example.
        let v: Value = serde_json::from_str(
            r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#,
        )
        .expect("json");
        let c = canonicalize(&v);
        let order = [
            "\\r",
            "1",
            "\u{80}",
            "\u{f6}",
            "\u{20ac}",
            "\u{1f600}",
            "\u{fb33}",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|k| c.find(&format!("\"{k}\":")).expect("key present"))
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{c}");
        assert_eq!(
            canonicalize(&serde_json::json!({"b": [1, "x\u{1}\n/é"], "a": null})),
            "{\"a\":null,\"b\":[1,\"x\\u0001\\n/é\"]}"
        );
    }
}
