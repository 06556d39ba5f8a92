//! Verification keys and the algorithms they may verify: HMAC secrets, PEM public keys (SPKI,
//! PKCS#1 RSA or an X.509 certificate; RSA, EC P-256/P-384 or Ed25519), the `algorithms`
//! allow-list and the rules that tie the two together (a key only ever verifies algorithms of
//! its own family, so an HMAC token is never checked against a public key and `none` is never
//! accepted).

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::RSAPublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// Every algorithm Conduit verifies, in the order error messages list them.
pub const ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Smallest and largest RSA modulus accepted, in bits (what the verifier supports).
pub const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// The name of `alg` as tokens and configs spell it.
pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
    }
}

/// The algorithm named `name` (exact spelling), if Conduit verifies it.
pub fn parse_alg(name: &str) -> Option<Algorithm> {
    ALGORITHMS.into_iter().find(|a| alg_name(*a) == name)
}

/// Whether `alg` is an HMAC algorithm (a shared secret, not a public key).
pub fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// A set of algorithms, as a bit mask (no allocation to build or query).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlgSet(u16);

impl AlgSet {
    /// No algorithm.
    pub const EMPTY: AlgSet = AlgSet(0);

    fn bit(alg: Algorithm) -> u16 {
        let i = ALGORITHMS.iter().position(|a| *a == alg).unwrap_or(0);
        1 << i
    }

    /// The set of `algs`.
    pub fn of(algs: &[Algorithm]) -> AlgSet {
        AlgSet(algs.iter().fold(0, |m, a| m | Self::bit(*a)))
    }

    /// Whether `alg` is in the set.
    pub fn contains(self, alg: Algorithm) -> bool {
        self.0 & Self::bit(alg) != 0
    }

    /// The algorithms in both sets.
    pub fn and(self, other: AlgSet) -> AlgSet {
        AlgSet(self.0 & other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The algorithms in the set, in [`ALGORITHMS`] order.
    pub fn iter(self) -> impl Iterator<Item = Algorithm> {
        ALGORITHMS.into_iter().filter(move |a| self.contains(*a))
    }

    /// The names, comma-separated (for messages).
    pub fn names(self) -> String {
        self.iter().map(alg_name).collect::<Vec<_>>().join(", ")
    }
}

/// What kind of key verifies a token; each kind verifies a fixed family of algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A shared secret: HS256, HS384, HS512.
    Hmac,
    /// An RSA public key: RS256/384/512 and PS256/384/512.
    Rsa,
    /// An EC public key on P-256: ES256.
    EcP256,
    /// An EC public key on P-384: ES384.
    EcP384,
    /// An Ed25519 public key: EdDSA.
    Ed25519,
}

impl Family {
    /// The algorithms a key of this family can verify.
    pub fn algorithms(self) -> AlgSet {
        use Algorithm::*;
        match self {
            Family::Hmac => AlgSet::of(&[HS256, HS384, HS512]),
            Family::Rsa => AlgSet::of(&[RS256, RS384, RS512, PS256, PS384, PS512]),
            Family::EcP256 => AlgSet::of(&[ES256]),
            Family::EcP384 => AlgSet::of(&[ES384]),
            Family::Ed25519 => AlgSet::of(&[EdDSA]),
        }
    }

    /// The algorithm accepted when `algorithms` is not set.
    pub fn default_alg(self) -> Algorithm {
        match self {
            Family::Hmac => Algorithm::HS256,
            Family::Rsa => Algorithm::RS256,
            Family::EcP256 => Algorithm::ES256,
            Family::EcP384 => Algorithm::ES384,
            Family::Ed25519 => Algorithm::EdDSA,
        }
    }

    /// The key kind in words (for messages).
    pub fn describe(self) -> &'static str {
        match self {
            Family::Hmac => "a shared secret",
            Family::Rsa => "an RSA public key",
            Family::EcP256 => "an EC P-256 public key",
            Family::EcP384 => "an EC P-384 public key",
            Family::Ed25519 => "an Ed25519 public key",
        }
    }
}

/// The shortest HMAC secret, in bytes, for `alg`: the size of its hash (RFC 7518, 3.2).
pub fn min_secret_len(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

/// A parsed verification key.
#[derive(Clone)]
pub struct Key {
    pub family: Family,
    pub key: DecodingKey,
}

impl std::fmt::Debug for Key {
    // Shows the kind of key only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("family", &self.family).finish()
    }
}

/// Reads `publicKey`: PEM text (starting with `-----BEGIN`) or the path of a PEM file. Errors
/// never quote the key.
pub fn load_public_key(value: &str) -> Result<Key, String> {
    let trimmed = value.trim_start();
    if trimmed.starts_with("-----BEGIN") {
        return parse_pem(trimmed).map_err(|e| format!("the PEM text {e}"));
    }
    if value.trim().is_empty() {
        return Err("must be PEM text or the path of a PEM file".into());
    }
    let text = std::fs::read_to_string(value).map_err(|e| format!("cannot read `{value}`: {e}"))?;
    parse_pem(&text).map_err(|e| format!("`{value}` {e}"))
}

/// The first PEM block of `text`: its label and DER bytes.
fn pem_block(text: &str) -> Result<(&str, Vec<u8>), String> {
    let start = text
        .find("-----BEGIN ")
        .ok_or("holds no PEM block (expected -----BEGIN PUBLIC KEY-----)")?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----").ok_or("has a malformed PEM header")?;
    let label = &rest[..label_end];
    let body = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let body_end = body
        .find(&end_marker)
        .ok_or_else(|| format!("lacks the `{end_marker}` line"))?;
    let b64: String = body[..body_end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "has a PEM body that is not base64".to_string())?;
    Ok((label, der))
}

/// Parses a PEM public key, PKCS#1 RSA public key or certificate.
fn parse_pem(text: &str) -> Result<Key, String> {
    let (label, der) = pem_block(text)?;
    match label {
        "PUBLIC KEY" => {
            let (_, spki) = SubjectPublicKeyInfo::from_der(&der)
                .map_err(|_| "is not a valid SubjectPublicKeyInfo (PUBLIC KEY)".to_string())?;
            key_of_spki(&spki)
        }
        "RSA PUBLIC KEY" => rsa_key(&der),
        "CERTIFICATE" => {
            let (_, cert) = X509Certificate::from_der(&der)
                .map_err(|_| "is not a valid X.509 certificate".to_string())?;
            key_of_spki(cert.public_key())
        }
        l if l.contains("PRIVATE KEY") => {
            Err("holds a private key; give the public key instead (`openssl pkey -pubout`)".into())
        }
        l => Err(format!(
            "holds a `{l}` block; expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE"
        )),
    }
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ED25519: &str = "1.3.101.112";

fn key_of_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<Key, String> {
    let oid = spki.algorithm.algorithm.to_id_string();
    let data: &[u8] = &spki.subject_public_key.data;
    match oid.as_str() {
        OID_RSA => rsa_key(data),
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            let (family, len) = match curve.as_str() {
                OID_P256 => (Family::EcP256, 65),
                OID_P384 => (Family::EcP384, 97),
                _ => {
                    return Err(
                        "is an EC key on a curve Conduit does not verify (use P-256 or P-384)"
                            .into(),
                    )
                }
            };
            if data.len() != len || data.first() != Some(&4) {
                return Err("is an EC key whose point is not an uncompressed point".into());
            }
            Ok(Key {
                family,
                key: DecodingKey::from_ec_der(data),
            })
        }
        OID_ED25519 if data.len() == 32 => Ok(Key {
            family: Family::Ed25519,
            key: DecodingKey::from_ed_der(data),
        }),
        OID_ED25519 => Err("is an Ed25519 key of the wrong length".into()),
        _ => Err(format!(
            "is a key of type {oid}; Conduit verifies RSA, EC (P-256, P-384) and Ed25519 keys"
        )),
    }
}

/// Bits of a big-endian unsigned integer.
pub fn bit_len(bytes: &[u8]) -> usize {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    match bytes.get(start) {
        Some(first) => (bytes.len() - start) * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

/// An RSA key from its PKCS#1 `RSAPublicKey` DER.
fn rsa_key(der: &[u8]) -> Result<Key, String> {
    let (_, rsa) =
        RSAPublicKey::from_der(der).map_err(|_| "is not a valid RSA public key".to_string())?;
    let bits = bit_len(rsa.modulus);
    if !RSA_BITS.contains(&bits) {
        return Err(format!(
            "is a {bits}-bit RSA key; RSA keys must have {} to {} bits",
            RSA_BITS.start(),
            RSA_BITS.end()
        ));
    }
    Ok(Key {
        family: Family::Rsa,
        key: DecodingKey::from_rsa_der(der),
    })
}

/// One problem with a key configuration: the field it concerns (`""` for the object itself,
/// else `secret`, `publicKey`, `jwksUrl`, `algorithms` or `algorithms[i]`) and the message.
pub type Problem = (String, String);

/// Parses the `algorithms` list (problems for unknown names, `none`, an empty list, HMAC mixed
/// with public-key algorithms); `None` when the field is not set.
pub fn parse_algorithms(list: Option<&[String]>, problems: &mut Vec<Problem>) -> Option<AlgSet> {
    let list = list?;
    if list.is_empty() {
        problems.push((
            "algorithms".into(),
            "must list at least one algorithm (or leave it out for the key's default)".into(),
        ));
        return Some(AlgSet::EMPTY);
    }
    let mut algs = Vec::new();
    for (i, name) in list.iter().enumerate() {
        match parse_alg(name) {
            Some(a) => algs.push(a),
            None if name.eq_ignore_ascii_case("none") => problems.push((
                format!("algorithms[{i}]"),
                "`none` (unsigned tokens) is never accepted".into(),
            )),
            None => problems.push((
                format!("algorithms[{i}]"),
                format!(
                    "`{name}` is not a supported algorithm; use one of {}",
                    ALGORITHMS.map(alg_name).join(", ")
                ),
            )),
        }
    }
    let set = AlgSet::of(&algs);
    if algs.iter().any(|a| is_hmac(*a)) && algs.iter().any(|a| !is_hmac(*a)) {
        problems.push((
            "algorithms".into(),
            "mixes HMAC algorithms (HS256/384/512, a shared secret) with public-key algorithms; \
             one jwtAuth verifies one kind of key"
                .into(),
        ));
    }
    Some(set)
}

/// A static key with the algorithms it verifies.
pub struct StaticKey {
    pub key: Key,
    pub algorithms: AlgSet,
}

/// The `secret` as an HMAC key: at least as long as the hash of every algorithm it verifies.
fn secret_key(secret: &str, algs: AlgSet, problems: &mut Vec<Problem>) -> Option<Key> {
    if secret.is_empty() {
        problems.push(("secret".into(), "must not be empty".into()));
        return None;
    }
    let alg = algs
        .iter()
        .max_by_key(|a| min_secret_len(*a))
        .unwrap_or(Algorithm::HS256);
    let need = min_secret_len(alg);
    if secret.len() < need {
        problems.push((
            "secret".into(),
            format!(
                "is {} bytes; {} needs a secret of at least {need} bytes (RFC 7518: as long as \
                 the hash); use a long random value, e.g. `openssl rand -base64 48`",
                secret.len(),
                alg_name(alg)
            ),
        ));
        return None;
    }
    Some(Key {
        family: Family::Hmac,
        key: DecodingKey::from_secret(secret.as_bytes()),
    })
}

/// Resolves a secret or public key with its `algorithms`: the key, parsed once, and the
/// algorithms it verifies (default: the key family's usual one). All problems are reported.
pub fn static_key(
    secret: Option<&str>,
    public_key: Option<&str>,
    algorithms: Option<&[String]>,
) -> Result<StaticKey, Vec<Problem>> {
    let mut problems = Vec::new();
    let listed = parse_algorithms(algorithms, &mut problems);
    let key = match (secret, public_key) {
        (Some(_), Some(_)) => {
            problems.push((
                String::new(),
                "set either `secret` or `publicKey`, not both".into(),
            ));
            None
        }
        (None, None) => {
            problems.push((
                String::new(),
                "needs a key: set `secret` (HS256/384/512) or `publicKey` (PEM)".into(),
            ));
            None
        }
        (Some(s), None) => {
            let algs = listed.unwrap_or(AlgSet::of(&[Family::Hmac.default_alg()]));
            let algs = if algs.iter().any(|a| !is_hmac(a)) {
                problems.push((
                    "algorithms".into(),
                    format!(
                        "{} needs a public key; a `secret` verifies only HS256, HS384 and HS512",
                        algs.iter()
                            .filter(|a| !is_hmac(*a))
                            .map(alg_name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
                algs.and(Family::Hmac.algorithms())
            } else {
                algs
            };
            secret_key(s, algs, &mut problems)
        }
        (None, Some(p)) => match load_public_key(p) {
            Ok(k) => Some(k),
            Err(e) => {
                problems.push(("publicKey".into(), e));
                None
            }
        },
    };
    let Some(key) = key else {
        return Err(problems);
    };
    let fits = key.family.algorithms();
    let algorithms = match listed {
        None => AlgSet::of(&[key.family.default_alg()]),
        Some(l) => {
            let misfits: Vec<_> = l.iter().filter(|a| !fits.contains(*a)).collect();
            if !misfits.is_empty() && key.family != Family::Hmac {
                problems.push((
                    "algorithms".into(),
                    format!(
                        "{} cannot be verified with {}, which verifies {}",
                        misfits
                            .into_iter()
                            .map(alg_name)
                            .collect::<Vec<_>>()
                            .join(", "),
                        key.family.describe(),
                        fits.names()
                    ),
                ));
            }
            l.and(fits)
        }
    };
    if problems.is_empty() && !algorithms.is_empty() {
        Ok(StaticKey { key, algorithms })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn fields(r: Result<StaticKey, Vec<Problem>>) -> Vec<String> {
        match r {
            Ok(_) => vec![],
            Err(p) => p.into_iter().map(|(f, _)| f).collect(),
        }
    }

    #[test]
    fn alg_sets() {
        let s = AlgSet::of(&[Algorithm::RS256, Algorithm::EdDSA]);
        assert!(s.contains(Algorithm::RS256) && s.contains(Algorithm::EdDSA));
        assert!(!s.contains(Algorithm::HS256));
        assert_eq!(s.names(), "RS256, EdDSA");
        assert!(s.and(Family::Hmac.algorithms()).is_empty());
        for a in ALGORITHMS {
            assert_eq!(parse_alg(alg_name(a)), Some(a));
        }
        assert_eq!(parse_alg("none"), None);
        assert_eq!(parse_alg("hs256"), None);
        assert_eq!(bit_len(&[0, 0x01, 0xff]), 9);
        assert_eq!(bit_len(&[0x80, 0]), 16);
        assert_eq!(bit_len(&[]), 0);
    }

    #[test]
    fn public_keys_by_kind() {
        let spki = load_public_key(&fixture("rsa_public.pem")).unwrap();
        assert_eq!(spki.family, Family::Rsa);
        let pkcs1 = load_public_key(&fixture("rsa_public_pkcs1.pem")).unwrap();
        assert_eq!(pkcs1.family, Family::Rsa);
        // Inline PEM text works like a path.
        let text = std::fs::read_to_string(fixture("rsa_public.pem")).unwrap();
        assert_eq!(load_public_key(&text).unwrap().family, Family::Rsa);

        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        assert_eq!(
            load_public_key(&ec.public_key_pem()).unwrap().family,
            Family::EcP256
        );
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        assert_eq!(
            load_public_key(&ec.public_key_pem()).unwrap().family,
            Family::EcP384
        );
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert_eq!(
            load_public_key(&ed.public_key_pem()).unwrap().family,
            Family::Ed25519
        );
        // A certificate's key.
        let cert = rcgen::CertificateParams::new(vec!["a.test".into()])
            .unwrap()
            .self_signed(&ec)
            .unwrap();
        assert_eq!(load_public_key(&cert.pem()).unwrap().family, Family::EcP384);
    }

    #[test]
    fn unusable_public_keys() {
        let e = load_public_key(&fixture("rsa1024_public.pem")).unwrap_err();
        assert!(e.contains("1024-bit"), "{e}");
        let private = std::fs::read_to_string(fixture("rsa_private.pem")).unwrap();
        let e = load_public_key(&private).unwrap_err();
        assert!(e.contains("private key"), "{e}");
        // The key itself is never echoed.
        assert!(!e.contains(&private[40..80]), "{e}");
        let e = load_public_key("/nonexistent/key.pem").unwrap_err();
        assert!(e.contains("cannot read `/nonexistent/key.pem`"), "{e}");
        let e = load_public_key("-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----")
            .unwrap_err();
        assert!(e.contains("not base64"), "{e}");
        let e = load_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n").unwrap_err();
        assert!(e.contains("-----END PUBLIC KEY-----"), "{e}");
        assert!(load_public_key("").is_err());
    }

    #[test]
    fn static_keys_and_algorithms() {
        let secret = "0123456789abcdef0123456789abcdef";
        let k = static_key(Some(secret), None, None).ok().unwrap();
        assert_eq!(k.algorithms, AlgSet::of(&[Algorithm::HS256]));
        let k = static_key(Some(&secret.repeat(2)), None, Some(&["HS512".into()]))
            .ok()
            .unwrap();
        assert_eq!(k.algorithms, AlgSet::of(&[Algorithm::HS512]));
        let rsa = fixture("rsa_public.pem");
        let k = static_key(None, Some(&rsa), None).ok().unwrap();
        assert_eq!(k.algorithms, AlgSet::of(&[Algorithm::RS256]));
        let k = static_key(None, Some(&rsa), Some(&["PS256".into(), "RS512".into()]))
            .ok()
            .unwrap();
        assert_eq!(
            k.algorithms,
            AlgSet::of(&[Algorithm::PS256, Algorithm::RS512])
        );

        // Weak secrets: shorter than the hash.
        assert_eq!(fields(static_key(Some("short"), None, None)), ["secret"]);
        assert_eq!(
            fields(static_key(Some(secret), None, Some(&["HS384".into()]))),
            ["secret"]
        );
        assert_eq!(fields(static_key(Some(""), None, None)), ["secret"]);
        // Families must fit.
        assert_eq!(
            fields(static_key(Some(secret), None, Some(&["RS256".into()]))),
            ["algorithms"]
        );
        assert_eq!(
            fields(static_key(None, Some(&rsa), Some(&["HS256".into()]))),
            ["algorithms"]
        );
        assert_eq!(
            fields(static_key(None, Some(&rsa), Some(&["ES256".into()]))),
            ["algorithms"]
        );
        // Names.
        assert_eq!(
            fields(static_key(
                Some(secret),
                None,
                Some(&["none".into(), "HS999".into(), "HS256".into()])
            )),
            ["algorithms[0]", "algorithms[1]"]
        );
        assert_eq!(
            fields(static_key(
                None,
                Some(&rsa),
                Some(&["HS256".into(), "RS256".into()])
            )),
            ["algorithms", "algorithms"]
        );
        assert_eq!(
            fields(static_key(None, Some(&rsa), Some(&[]))),
            ["algorithms"]
        );
        // Exactly one key.
        assert_eq!(fields(static_key(None, None, None)), [""]);
        assert_eq!(fields(static_key(Some(secret), Some(&rsa), None)), [""]);
        assert_eq!(
            fields(static_key(None, Some("/nonexistent.pem"), None)),
            ["publicKey"]
        );
    }
}
