//! Kubernetes resource quantities (`500m`, `256Mi`, `1G`, `1e3`) to numbers:
//! the one parser for the quantities a profile gives and the ones the API
//! server reports (a node's allocatable memory, pods' requests).
//!
//! The rules are Kubernetes' (`resource.Quantity`): a number (`1`, `1.5`,
//! `.5`, `1.`, an optional `+`), then binary suffixes `Ki Mi Gi Ti Pi Ei`
//! (powers of 1024), decimal suffixes `n u m k M G T P E` (`m` is milli:
//! `500m` CPU is half a core), or a decimal exponent (`1e3`, `2E-1`).
//! Negative quantities are refused: nothing fedilab reads may be negative.
//! Pure.

/// Binary suffixes: powers of 1024.
const BINARY: &[(&str, f64)] = &[
    ("Ki", 1024.0),
    ("Mi", 1_048_576.0),
    ("Gi", 1_073_741_824.0),
    ("Ti", 1_099_511_627_776.0),
    ("Pi", 1_125_899_906_842_624.0),
    ("Ei", 1_152_921_504_606_846_976.0),
];

/// Decimal suffixes: powers of 1000 (`n`, `u` and `m` below one).
const DECIMAL: &[(&str, f64)] = &[
    ("n", 1e-9),
    ("u", 1e-6),
    ("m", 1e-3),
    ("", 1.0),
    ("k", 1e3),
    ("M", 1e6),
    ("G", 1e9),
    ("T", 1e12),
    ("P", 1e15),
    ("E", 1e18),
];

/// The value of the Kubernetes quantity `text` in base units (bytes for
/// memory, cores for CPU); `None` when it is not a quantity or negative.
/// `0` is a quantity (`Some(0.0)`).
pub fn parse_quantity(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    let split = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(split);
    let digits = number.bytes().filter(u8::is_ascii_digit).count();
    if digits == 0 || number.bytes().filter(|b| *b == b'.').count() > 1 {
        return None;
    }
    let factor = BINARY
        .iter()
        .chain(DECIMAL)
        .find(|(s, _)| *s == suffix)
        .map(|(_, f)| *f)
        .or_else(|| exponent(suffix))?;
    let value: f64 = number.parse().ok()?;
    let value = value * factor;
    value.is_finite().then_some(value)
}

/// `e<signed integer>` or `E<signed integer>` as a factor.
fn exponent(suffix: &str) -> Option<f64> {
    let power = suffix
        .strip_prefix('e')
        .or_else(|| suffix.strip_prefix('E'))?;
    let digits = power
        .strip_prefix('-')
        .or_else(|| power.strip_prefix('+'))
        .unwrap_or(power);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let power: i32 = power.parse().ok()?;
    Some(10f64.powi(power))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_binary_suffix_is_a_power_of_1024() {
        let kib = 1024.0_f64;
        for (text, value) in [
            ("1Ki", kib),
            ("1Mi", kib.powi(2)),
            ("1Gi", kib.powi(3)),
            ("1Ti", kib.powi(4)),
            ("1Pi", kib.powi(5)),
            ("1Ei", kib.powi(6)),
            ("512Mi", 512.0 * kib.powi(2)),
            ("3940812Ki", 3_940_812.0 * kib),
            ("1.5Gi", 1.5 * kib.powi(3)),
        ] {
            assert_eq!(parse_quantity(text), Some(value), "{text}");
        }
    }

    #[test]
    fn every_decimal_suffix_is_a_power_of_1000() {
        for (text, value) in [
            ("1n", 1e-9),
            ("1u", 1e-6),
            ("250m", 0.25),
            ("500m", 0.5),
            ("1k", 1e3),
            ("1M", 1e6),
            ("1G", 1e9),
            ("1T", 1e12),
            ("1P", 1e15),
            ("1E", 1e18),
        ] {
            assert_eq!(parse_quantity(text), Some(value), "{text}");
        }
    }

    #[test]
    fn plain_numbers_and_exponents() {
        for (text, value) in [
            ("0", 0.0),
            ("2", 2.0),
            ("1.5", 1.5),
            (".5", 0.5),
            ("1.", 1.0),
            ("+3", 3.0),
            ("1e3", 1000.0),
            ("1E3", 1000.0),
            ("2e-1", 0.2),
            ("5e+2", 500.0),
        ] {
            assert_eq!(parse_quantity(text), Some(value), "{text}");
        }
    }

    #[test]
    fn what_is_not_a_quantity() {
        for text in [
            "", "Mi", "-1", "lots", "1.2.3", "1Xi", "1 Gi", " 1", "1e", "1e1.5", "1KI", "1mi", ".",
            "+", "1Gi1", "1e99999",
        ] {
            assert_eq!(parse_quantity(text), None, "{text:?}");
        }
    }
}
