//! Polynomials over GF(2) (bit i = coefficient of x^i), as restic/chunker uses them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::FormatError;

/// A polynomial over GF(2); the repository's chunker polynomial is an
/// irreducible one of degree 53. JSON form: lowercase hex without `0x`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Polynomial(pub u64);

/// Tries restic makes before giving up on finding an irreducible polynomial.
const RANDOM_POLY_MAX_TRIES: usize = 1_000_000;

impl Polynomial {
    /// Degree; -1 for the zero polynomial.
    pub fn deg(&self) -> i32 {
        63 - self.0.leading_zeros() as i32
    }

    /// Remainder of `self / d`; `d` must not be zero (zero yields `self`).
    pub fn modulo(self, d: Polynomial) -> Polynomial {
        if d.0 == 0 {
            return self;
        }
        let dd = d.deg();
        let mut x = self.0;
        loop {
            let xd = 63 - x.leading_zeros() as i32;
            if x == 0 || xd < dd {
                return Polynomial(x);
            }
            x ^= d.0 << (xd - dd);
        }
    }

    /// `self * f mod g` (carry-less product reduced modulo `g`).
    pub fn mul_mod(self, f: Polynomial, g: Polynomial) -> Polynomial {
        if g.0 == 0 {
            return Polynomial(0);
        }
        let mut a = u128::from(self.modulo(g).0);
        let mut b = f.modulo(g).0;
        let mut prod = 0u128;
        while b != 0 {
            if b & 1 == 1 {
                prod ^= a;
            }
            a <<= 1;
            b >>= 1;
        }
        let gd = g.deg() as u32;
        while prod != 0 {
            let pd = 127 - prod.leading_zeros();
            if pd < gd {
                break;
            }
            prod ^= u128::from(g.0) << (pd - gd);
        }
        Polynomial(prod as u64)
    }

    fn gcd(self, other: Polynomial) -> Polynomial {
        let (mut a, mut b) = (self, other);
        while b.0 != 0 {
            let r = a.modulo(b);
            a = b;
            b = r;
        }
        a
    }

    /// Ben-Or's irreducibility test (as restic/chunker's `Irreducible`).
    pub fn is_irreducible(&self) -> bool {
        if self.0 < 2 {
            return false;
        }
        let x = Polynomial(2);
        let mut h = x; // x^(2^i) mod self
        for _ in 1..=self.deg() / 2 {
            h = h.mul_mod(h, *self);
            let q = Polynomial(h.0 ^ x.0).modulo(*self);
            if self.gcd(q).0 != 1 {
                return false;
            }
        }
        true
    }

    /// A random irreducible polynomial of degree 53 (restic's `RandomPolynomial`).
    pub fn random_irreducible() -> Result<Polynomial, FormatError> {
        Polynomial::derive(|| rand::RngCore::next_u64(&mut rand::rngs::OsRng))
    }

    /// restic's `DerivePolynomial`: draws 64-bit values, keeps bits 0..=53,
    /// forces the degree-53 and constant terms, and returns the first
    /// irreducible result.
    pub fn derive(mut next: impl FnMut() -> u64) -> Result<Polynomial, FormatError> {
        for _ in 0..RANDOM_POLY_MAX_TRIES {
            let f = Polynomial((next() & ((1 << 54) - 1)) | (1 << 53) | 1);
            if f.is_irreducible() {
                return Ok(f);
            }
        }
        Err(FormatError::Polynomial(
            "unable to find an irreducible polynomial".into(),
        ))
    }

    /// Lowercase hex without prefix (the config file form).
    pub fn to_hex(&self) -> String {
        format!("{:x}", self.0)
    }

    /// Parses hex digits (an optional `0x` prefix is accepted).
    pub fn from_hex(s: &str) -> Result<Polynomial, FormatError> {
        let t = s.strip_prefix("0x").unwrap_or(s);
        u64::from_str_radix(t, 16)
            .map(Polynomial)
            .map_err(|e| FormatError::Polynomial(format!("{s:?}: {e}")))
    }
}

impl fmt::Display for Polynomial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Debug for Polynomial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Polynomial({:#x})", self.0)
    }
}

impl Serialize for Polynomial {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Polynomial {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Polynomial, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        let t: &str = &s;
        if t.starts_with("0x") {
            return Err(serde::de::Error::custom(
                "polynomial must be hex without 0x",
            ));
        }
        Polynomial::from_hex(t).map_err(serde::de::Error::custom)
    }
}
