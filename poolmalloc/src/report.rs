//! Allocation-free text output: a fixed-size line buffer, and a
//! `core::fmt::Write` sink that writes straight to stderr. Used for warnings,
//! fatal reports and the statistics report from inside the allocator, where
//! `format!` and `println!` are forbidden.

use crate::os;

/// A line of at most 512 bytes built without allocating. Longer text is cut.
pub struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    /// An empty line.
    pub const fn new() -> Line {
        Line { buf: [0; 512], len: 0 }
    }

    /// Appends bytes.
    pub fn push_bytes(&mut self, s: &[u8]) -> &mut Self {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
        self
    }

    /// Appends text.
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.push_bytes(s.as_bytes())
    }

    /// Appends `0x` and the hexadecimal digits of `v`.
    pub fn push_hex(&mut self, v: usize) -> &mut Self {
        self.push("0x").push_hex_bare(v)
    }

    /// Appends the hexadecimal digits of `v`, without `0x`.
    pub fn push_hex_bare(&mut self, v: usize) -> &mut Self {
        let mut digits = [0u8; 16];
        let mut n = 0;
        let mut x = v;
        loop {
            digits[n] = b"0123456789abcdef"[x & 15];
            n += 1;
            x >>= 4;
            if x == 0 {
                break;
            }
        }
        while n > 0 {
            n -= 1;
            self.push_bytes(&digits[n..n + 1]);
        }
        self
    }

    /// Appends a decimal number.
    pub fn push_u64(&mut self, v: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut n = 0;
        let mut x = v;
        loop {
            digits[n] = b'0' + (x % 10) as u8;
            n += 1;
            x /= 10;
            if x == 0 {
                break;
            }
        }
        while n > 0 {
            n -= 1;
            self.push_bytes(&digits[n..n + 1]);
        }
        self
    }

    /// Appends a signed decimal number.
    pub fn push_i64(&mut self, v: i64) -> &mut Self {
        if v < 0 {
            self.push("-");
        }
        self.push_u64(v.unsigned_abs())
    }

    /// The bytes so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Default for Line {
    fn default() -> Self {
        Line::new()
    }
}

/// A `core::fmt::Write` sink that sends text to stderr in chunks, through a
/// stack buffer, without allocating.
pub struct Stderr {
    buf: [u8; 1024],
    len: usize,
}

impl Stderr {
    /// An empty sink.
    pub const fn new() -> Stderr {
        Stderr { buf: [0; 1024], len: 0 }
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) {
        os::write_stderr(&self.buf[..self.len]);
        self.len = 0;
    }
}

impl Default for Stderr {
    fn default() -> Self {
        Stderr::new()
    }
}

impl core::fmt::Write for Stderr {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for chunk in s.as_bytes().chunks(self.buf.len()) {
            if self.len + chunk.len() > self.buf.len() {
                self.flush();
            }
            self.buf[self.len..self.len + chunk.len()].copy_from_slice(chunk);
            self.len += chunk.len();
        }
        Ok(())
    }
}

impl Drop for Stderr {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_formats_numbers() {
        let mut l = Line::new();
        l.push("a ").push_hex(0xdead_beef).push(" ").push_u64(0).push(" ").push_i64(-42);
        assert_eq!(l.as_bytes(), b"a 0xdeadbeef 0 -42");
    }

    #[test]
    fn line_truncates() {
        let mut l = Line::new();
        for _ in 0..100 {
            l.push("0123456789");
        }
        assert_eq!(l.as_bytes().len(), 512);
    }
}
