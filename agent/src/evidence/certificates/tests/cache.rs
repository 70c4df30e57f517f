//! One analysis per chain, whatever the names, and caches bounded in bytes.

use super::*;

/// The names a flood of handshakes may carry; the verdict for each must be
/// exactly OpenSSL's with that name set.
const NAMES: [&str; 15] = [
    "www.example.test",
    "WWW.EXAMPLE.TEST.",
    "api.example.test",
    "random-1b2c3d.example.test",
    "x.www.example.test",
    "*.example.test",
    "10.1.2.3",
    "10.1.2.4",
    "::1",
    "",
    "a..b",
    "www.example.test.evil",
    ".",
    "x\0y",
    "[::1]",
];

#[test]
fn one_analysis_answers_every_name_as_openssl_would() {
    let p = pki("cache-names");
    let leaf = p.leaf(&Spec::leaf(
        "www.example.test",
        &["www.example.test", "10.1.2.3"],
    ));
    let der = vec![leaf.to_der().unwrap(), p.int.to_der().unwrap()];
    let now = Utc::now();
    let mut once = AnalysedChain::new(&der, now, &p.trust, "test");
    let certs = vec![leaf.clone(), p.int.clone()];
    // Twice round: the second pass answers from what the first computed.
    for _ in 0..2 {
        for name in NAMES {
            let cached = once.report_for(Some(name), &p.trust);
            let (code, text) = openssl_verify(&certs, Some(name), now, &p.trust).unwrap();
            assert_eq!(
                (cached.verify_code, cached.verify_text.as_str()),
                (code, text.as_str()),
                "{name:?}"
            );
            // And the same findings as a fresh analysis for that name.
            let fresh =
                AnalysedChain::new(&der, now, &p.trust, "test").report_for(Some(name), &p.trust);
            assert_eq!(cached, fresh, "{name:?}");
        }
    }
    let none = once.report_for(None, &p.trust);
    assert_eq!(none.verify_code, 0, "{}", none.verify_text);
    assert_eq!(none.name, None);
}

#[test]
fn the_name_mismatch_keeps_its_place_among_the_findings() {
    let p = pki("cache-order");
    let now = Utc::now();
    // Expired leaf served without its intermediate: path finding, then the
    // name, then the date.
    let mut spec = Spec::leaf("old.example.test", &["old.example.test"]);
    spec.not_before = now - Duration::days(400);
    spec.not_after = now - Duration::days(5);
    let leaf = p.leaf(&spec);
    let der = vec![leaf.to_der().unwrap()];
    let mut analysed = AnalysedChain::new(&der, now, &p.trust, "test");
    let r = analysed.report_for(Some("new.example.test"), &p.trust);
    assert_eq!(
        kinds(&r),
        ["missing-intermediate", "name-mismatch", "expired"]
    );
    // Files that could not be read go first, replacing "unreadable" ones.
    analysed.replace_unreadable(vec![ChainFinding::Unreadable {
        path: "/etc/ssl/chain.pem".into(),
        error: "permission denied".into(),
    }]);
    let r = analysed.report_for(Some("new.example.test"), &p.trust);
    assert_eq!(
        kinds(&r),
        [
            "unreadable",
            "missing-intermediate",
            "name-mismatch",
            "expired"
        ]
    );
}

/// A peer decides how large its certificates are: the parsed-certificate
/// cache is bounded in bytes, not in certificates.
#[test]
fn the_certificate_cache_is_bounded_in_bytes() {
    let p = pki("cache-bytes");
    let key = ec_key();
    // ~40 KiB certificates: 1500 long SANs each.
    let names: Vec<String> = (0..1500)
        .map(|i| format!("host-{i:05}.padding.example.test"))
        .collect();
    let sans: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut cache = CertificateCache::default();
    let mut total = 0;
    for i in 0..300 {
        let cn = format!("big-{i}.example.test");
        let cert = p.leaf_with_key(&Spec::leaf(&cn, &sans), &key);
        let der = cert.to_der().unwrap();
        assert!(der.len() > 32 << 10, "{}", der.len());
        total += der.len();
        let fact = cache.fact(&der).unwrap();
        assert_eq!(fact.common_name.as_deref(), Some(cn.as_str()));
        assert!(
            cache.bytes() <= CERTIFICATE_CACHE_BYTES,
            "{}",
            cache.bytes()
        );
    }
    assert!(
        total > 2 * CERTIFICATE_CACHE_BYTES,
        "the test must overflow it"
    );
}
