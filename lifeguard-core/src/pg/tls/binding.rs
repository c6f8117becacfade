//! The `tls-server-end-point` channel binding (RFC 5929): a hash of the server's
//! certificate, with the hash function of the certificate's own signature (SHA-256 when
//! that is MD5 or SHA-1, and for algorithms that name no hash), which is what PostgreSQL
//! computes on its side.

use ring::digest;

/// The binding data for the server certificate `der`.
pub(crate) fn server_end_point(der: &[u8]) -> Vec<u8> {
    let algorithm = match signature_oid(der) {
        Some(oid) if SHA384.contains(&oid) => &digest::SHA384,
        Some(oid) if SHA512.contains(&oid) => &digest::SHA512,
        _ => &digest::SHA256,
    };
    digest::digest(algorithm, der).as_ref().to_vec()
}

/// sha384WithRSAEncryption, ecdsa-with-SHA384 (DER contents of the OID).
const SHA384: [&[u8]; 2] = [
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
    &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
];
/// sha512WithRSAEncryption, ecdsa-with-SHA512.
const SHA512: [&[u8]; 2] = [
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
    &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
];

/// The OID of `Certificate.signatureAlgorithm`: the second element of the outer SEQUENCE,
/// itself a SEQUENCE starting with the OID. `None` for anything that does not parse.
fn signature_oid(der: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = element(der, 0x30)?;
    let (_, after_tbs) = element(certificate, 0x30)?;
    let (algorithm, _) = element(after_tbs, 0x30)?;
    let (oid, _) = element(algorithm, 0x06)?;
    Some(oid)
}

/// Splits one DER element with tag `tag` off the front of `input`: its contents and the rest.
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len, rest) = rest.split_first()?;
    let (len, rest) = if len < 0x80 {
        (usize::from(len), rest)
    } else {
        let octets = usize::from(len & 0x7f);
        if octets == 0 || octets > 4 || rest.len() < octets {
            return None;
        }
        let (bytes, rest) = rest.split_at(octets);
        (
            bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b)),
            rest,
        )
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal certificate-shaped DER: SEQUENCE { SEQUENCE {}, SEQUENCE { OID }, BIT STRING }.
    fn shaped(oid: &[u8]) -> Vec<u8> {
        let mut alg = vec![0x06, oid.len() as u8];
        alg.extend_from_slice(oid);
        let mut body = vec![0x30, 0x00, 0x30, alg.len() as u8];
        body.extend_from_slice(&alg);
        body.extend_from_slice(&[0x03, 0x01, 0x00]);
        let mut der = vec![0x30, body.len() as u8];
        der.extend_from_slice(&body);
        der
    }

    #[test]
    fn the_hash_follows_the_signature_algorithm() {
        let ecdsa_sha256 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        assert_eq!(server_end_point(&shaped(&ecdsa_sha256)).len(), 32);
        assert_eq!(server_end_point(&shaped(SHA384[0])).len(), 48);
        assert_eq!(server_end_point(&shaped(SHA512[1])).len(), 64);
        // Not a certificate at all: SHA-256 of the bytes, never a panic.
        assert_eq!(server_end_point(&[0x30, 0x85, 0xff]).len(), 32);
        assert_eq!(signature_oid(&shaped(SHA384[1])), Some(SHA384[1]));
    }
}
