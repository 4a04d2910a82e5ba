//! Number formatting for tables and messages, and the date stamp.

use std::time::SystemTime;

/// `1.23 s`, `45.6 ms`, `789 µs`.
pub fn seconds(s: f64) -> String {
    if s >= 10.0 {
        format!("{s:.1} s")
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

/// `12.3 Mop/s`.
pub fn rate(ops_per_sec: f64) -> String {
    if ops_per_sec >= 1e9 {
        format!("{:.2} Gop/s", ops_per_sec / 1e9)
    } else if ops_per_sec >= 1e6 {
        format!("{:.1} Mop/s", ops_per_sec / 1e6)
    } else {
        format!("{:.0} kop/s", ops_per_sec / 1e3)
    }
}

/// `12.3 MiB`.
pub fn bytes(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

/// A count that may be large: `0.5`, `812`, `81.2k`, `2.05M`.
pub fn count(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// `1.23×`.
pub fn ratio(r: f64) -> String {
    format!("{r:.2}×")
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ` (`humantime`).
pub fn utc_now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(seconds(1.234), "1.23 s");
        assert_eq!(seconds(0.0456), "45.6 ms");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(rate(12_345_678.0), "12.3 Mop/s");
        assert_eq!(ratio(0.954), "0.95×");
        assert_eq!(count(0.0), "0");
        assert_eq!(count(0.46), "0.5");
        assert_eq!(count(812.4), "812");
        assert_eq!(count(81_234.0), "81.2k");
        assert_eq!(count(2_049_000.0), "2.05M");
    }

    #[test]
    fn dates() {
        let now = utc_now();
        let b = now.as_bytes();
        assert_eq!((b.len(), b[4], b[10], b[19]), (20, b'-', b'T', b'Z'), "{now}");
        assert!(now.as_str() > "2026-01-01");
    }
}
