//! Column-by-column expectations for the messages under `collector/testdata/sip/`, plus inline
//! messages for single rules, and property tests (never panics; truncation).

use super::*;
use proptest::prelude::*;

macro_rules! corpus {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/sip/", $name)).as_slice()
    };
}

fn s(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("<non-utf8>")
}

fn strict() -> ExtractConfig {
    ExtractConfig::kamailio_defaults()
}

fn lax() -> ExtractConfig {
    let mut cfg = ExtractConfig::kamailio_defaults();
    cfg.capture_bad_msgs = true;
    cfg
}

fn ok(msg: &[u8]) -> SipColumns<'_> {
    match extract(msg, &strict()) {
        Ok(c) => c,
        Err(e) => panic!("{e}: {}", String::from_utf8_lossy(msg)),
    }
}

/// Wraps header lines into a minimal valid request (leaked: tests only).
fn req(extra: &str) -> &'static [u8] {
    let msg = format!(
        "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n\
         From: <sip:alice@example.com>;tag=f1\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: cid-1\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    Box::leak(msg.into_bytes().into_boxed_slice())
}

#[test]
fn invite_all_columns() {
    let c = ok(corpus!("invite.sip"));
    assert_eq!(c.msg_type, 1);
    assert_eq!(s(c.method), "INVITE");
    assert_eq!(s(c.reply_reason), "");
    assert_eq!(s(c.ruri), "sip:bob@biloxi.example.com");
    assert_eq!(s(c.ruri_user), "bob");
    assert_eq!(s(c.ruri_domain), "biloxi.example.com");
    assert_eq!(s(c.from_user), "alice");
    assert_eq!(s(c.from_domain), "atlanta.example.com");
    assert_eq!(s(c.from_tag), "1928301774");
    assert_eq!(s(c.to_user), "bob");
    assert_eq!(s(c.to_domain), "biloxi.example.com");
    assert_eq!(s(c.to_tag), "");
    assert_eq!(s(c.pid_user), "+15551234567");
    assert_eq!(s(c.contact_user), "alice");
    assert_eq!(s(c.contact_ip), "192.0.2.101");
    assert_eq!(c.contact_port, 5062);
    assert_eq!(s(c.auth_user), "");
    assert_eq!(s(c.callid), "a84b4c76e66710@pc33.atlanta.example.com");
    assert_eq!(s(c.callid_aleg), "b-leg-7766@gw.example.com");
    assert_eq!(
        s(c.via_1),
        "SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport"
    );
    assert_eq!(s(c.via_1_branch), "z9hG4bK776asdhds");
    assert_eq!(s(c.cseq), "314159 INVITE");
    assert_eq!(s(c.cseq_method), "INVITE");
    assert_eq!(s(c.reason), "");
    assert_eq!(s(c.content_type), "application/sdp");
    assert_eq!(s(c.user_agent), "ExamplePhone/1.2.3");
    assert_eq!(s(c.originator_ip), "");
    assert_eq!(c.originator_port, 0);
    assert_eq!(s(c.rtp_stat), "");
    assert_eq!(s(c.diversion), "");
    assert_eq!(
        (s(c.custom_field1), s(c.custom_field2), s(c.custom_field3)),
        ("", "", "")
    );
    assert!(!c.bad);
}

#[test]
fn reply_has_status_as_method_and_no_ruri() {
    let c = ok(corpus!("reply_200_invite.sip"));
    assert_eq!(c.msg_type, 2);
    assert_eq!(s(c.method), "200");
    assert_eq!(s(c.reply_reason), "OK");
    assert_eq!((s(c.ruri), s(c.ruri_user), s(c.ruri_domain)), ("", "", ""));
    assert_eq!(s(c.to_tag), "a6c85cf");
    assert_eq!(s(c.from_tag), "1928301774");
    assert_eq!(s(c.contact_user), "bob");
    assert_eq!(s(c.contact_ip), "192.0.2.4");
    assert_eq!(c.contact_port, 0, "no port in the Contact URI: 0, not 5060");
    assert_eq!(s(c.via_1_branch), "z9hG4bKnashds8");
    assert_eq!(s(c.cseq_method), "INVITE");

    let c = ok(corpus!("reply_486_busy.sip"));
    assert_eq!((s(c.method), s(c.reply_reason)), ("486", "Busy Here"));
    assert_eq!(s(c.reason), "Q.850;cause=17;text=\"User busy\"");
    assert_eq!(
        (s(c.contact_user), s(c.contact_ip), c.contact_port),
        ("", "", 0)
    );
}

#[test]
fn authorization_username_user_part() {
    let c = ok(corpus!("register_auth.sip"));
    assert_eq!(s(c.method), "REGISTER");
    assert_eq!(s(c.ruri_user), "");
    assert_eq!(s(c.ruri_domain), "registrar.biloxi.example.com");
    assert_eq!(s(c.auth_user), "bob");
    assert_eq!(
        (s(c.contact_user), s(c.contact_ip), c.contact_port),
        ("bob", "192.0.2.4", 5070)
    );
    assert_eq!(
        s(c.via_1),
        "SIP/2.0/TCP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7"
    );
}

#[test]
fn proxy_authorization_wins_over_authorization() {
    let c = ok(corpus!("invite_proxy_auth.sip"));
    assert_eq!(s(c.auth_user), "alice");
}

#[test]
fn compact_forms() {
    let c = ok(corpus!("compact_forms.sip"));
    assert_eq!(s(c.method), "MESSAGE");
    assert_eq!(
        s(c.via_1),
        "SIP/2.0/TCP user1pc.domain.example;branch=z9hG4bK776sgdkse"
    );
    assert_eq!(s(c.via_1_branch), "z9hG4bK776sgdkse");
    assert_eq!(
        (s(c.from_user), s(c.from_domain), s(c.from_tag)),
        ("user1", "domain.example", "49583")
    );
    assert_eq!(
        (s(c.to_user), s(c.to_domain), s(c.to_tag)),
        ("user2", "domain.example", "")
    );
    assert_eq!(s(c.callid), "asd88asd77a@1.2.3.4");
    assert_eq!(
        (s(c.contact_user), s(c.contact_ip), c.contact_port),
        ("user1", "1.2.3.4", 5099)
    );
    assert_eq!(s(c.content_type), "text/plain");
}

#[test]
fn folded_and_odd_whitespace() {
    let c = ok(corpus!("folded_headers.sip"));
    assert_eq!(s(c.ruri), "sip:vivekg@chair-dnrc.example.com;unknownparam");
    assert_eq!(
        (s(c.ruri_user), s(c.ruri_domain)),
        ("vivekg", "chair-dnrc.example.com")
    );
    assert_eq!((s(c.to_user), s(c.to_tag)), ("vivekg", "1918181833n"));
    assert_eq!(
        (s(c.from_user), s(c.from_domain), s(c.from_tag)),
        ("jdrosen", "example.com", "98asjd8")
    );
    assert_eq!(s(c.callid), "wsinv.ndaksdj@192.0.2.1");
    assert_eq!(
        s(c.via_1),
        "SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw"
    );
    assert_eq!(s(c.via_1_branch), "390skdjuw");
    assert_eq!(s(c.cseq), "0009 INVITE");
    assert_eq!(
        (s(c.contact_user), s(c.contact_ip)),
        ("jdrosen", "example.com")
    );
}

#[test]
fn folded_cseq_is_rejected_like_kamailio() {
    // parse_cseq does not skip a fold between the number and the method.
    let msg = corpus!("folded_cseq_rejected.sip");
    assert!(matches!(
        extract(msg, &strict()),
        Err(SipError::BadCSeq { .. })
    ));
}

#[test]
fn ipv6_hosts_keep_brackets() {
    let c = ok(corpus!("ipv6.sip"));
    assert_eq!(s(c.ruri), "sip:[2001:db8::10]:5070");
    assert_eq!((s(c.ruri_user), s(c.ruri_domain)), ("", "[2001:db8::10]"));
    assert_eq!(s(c.to_domain), "[2001:db8::10]");
    assert_eq!(s(c.from_domain), "[2001:db8::9:1]");
    assert_eq!(
        (s(c.contact_user), s(c.contact_ip), c.contact_port),
        ("caller", "[2001:db8::9:1]", 5061)
    );
}

#[test]
fn tel_and_user_phone() {
    let c = ok(corpus!("tel_uri.sip"));
    assert_eq!((s(c.ruri_user), s(c.ruri_domain)), ("+1-201-555-0123", ""));
    assert_eq!((s(c.from_user), s(c.from_domain)), ("+12015550100", ""));
    assert_eq!(
        (s(c.to_user), s(c.to_domain)),
        ("+12015550123", "gw.example.com")
    );
    // No PAI: the first P-Preferred-Identity wins over Remote-Party-ID.
    assert_eq!(s(c.pid_user), "ppi-user");
}

#[test]
fn pid_priority() {
    let c = ok(corpus!("pai_multiple.sip"));
    assert_eq!(s(c.pid_user), "+15551112222", "first URI of the first PAI");
    assert_eq!(s(c.ruri_user), "+15550001111");

    let rpid_only = req("Remote-Party-ID: \"R\" <sip:rpid@example.com>;party=calling\r\n");
    assert_eq!(s(ok(rpid_only).pid_user), "rpid");
    // A PAI that does not parse falls through to PPI.
    let bad_pai =
        req("P-Asserted-Identity: Bad Display\r\nP-Preferred-Identity: <sip:ppi@x.com>\r\n");
    assert_eq!(s(ok(bad_pai).pid_user), "ppi");
    // A second PAI header that does not parse also disqualifies PAI.
    let bad_second = req(
        "P-Asserted-Identity: <sip:pai@x.com>\r\nP-Asserted-Identity: <sip:a@b\r\n\
         Remote-Party-ID: <sip:rp@x.com>\r\n",
    );
    assert_eq!(s(ok(bad_second).pid_user), "rp");
    // The chosen URI does not parse: empty, no fall-through.
    let bad_uri =
        req("P-Asserted-Identity: <http://x.com>\r\nP-Preferred-Identity: <sip:ppi@x.com>\r\n");
    assert_eq!(s(ok(bad_uri).pid_user), "");
    assert_eq!(s(ok(req("")).pid_user), "");
}

#[test]
fn named_headers_rtp_xoip_reason_diversion_custom() {
    let c = ok(corpus!("bye_rtp_stats.sip"));
    assert!(
        s(c.rtp_stat).starts_with("CS=0;PS=1500"),
        "X-RTP-Stat beats P-RTP-Stat"
    );
    assert_eq!(
        (s(c.originator_ip), c.originator_port),
        ("198.51.100.7", 5080)
    );
    assert_eq!(
        s(c.reason),
        "SIP;cause=200;text=\"Call completed elsewhere\""
    );
    assert_eq!(
        s(c.diversion),
        "<sip:bob@biloxi.example.com>;reason=unconditional;counter=1"
    );
    assert_eq!(s(c.custom_field1), "00:11:22:33:44:55");
    assert_eq!(s(c.custom_field2), "192.0.2.101");
    assert_eq!(s(c.custom_field3), "5060");
    assert_eq!(
        s(c.callid_aleg),
        "",
        "x-cid does not match X-CID: first char is case-sensitive"
    );
    assert_eq!(
        (s(c.contact_user), s(c.contact_ip), c.contact_port),
        ("", "", 0)
    );
}

#[test]
fn fixed_names_match_like_get_hdr_by_name() {
    // The first byte exactly, the rest in any case; a name one byte longer or shorter is
    // another header.
    let c = ok(req("reason: lower\r\nREASON: upper\r\nReason: later\r\n"));
    assert_eq!(s(c.reason), "upper");
    let c = ok(req("Reasons: no\r\nReaso: no\r\nReAsOn: yes\r\n"));
    assert_eq!(s(c.reason), "yes");
    let c = ok(req("x-OIP: 192.0.2.1\r\nX-oip: 192.0.2.2:5070\r\n"));
    assert_eq!(s(c.originator_ip), "192.0.2.2");
    assert_eq!(c.originator_port, 5070);
    let c = ok(req(
        "p-rtp-stat: lower\r\nrtp-rxstat: lower\r\nP-rtp-STAT: p\r\n",
    ));
    assert_eq!(s(c.rtp_stat), "p");
}

#[test]
fn rtp_stat_priority_list() {
    let c = ok(req(
        "RTP-RxStat: rx\r\nX-NG-RTP-STATS: ng\r\nX-RTP-Stat-T38: t38\r\n",
    ));
    assert_eq!(s(c.rtp_stat), "t38");
    let c = ok(req("RTP-RxStat: rx\r\nX-Siemens-RTP-stats: siemens\r\n"));
    assert_eq!(s(c.rtp_stat), "siemens");
    let c = ok(req("X-RTP-Stat: plain\r\nX-RTP-Stat-Add: add\r\n"));
    assert_eq!(s(c.rtp_stat), "add");
    let c = ok(req("x-rtp-stat: lower\r\nX-rtp-STAT: mixed\r\n"));
    assert_eq!(
        s(c.rtp_stat),
        "mixed",
        "first char compared exactly, the rest case-insensitively"
    );
}

#[test]
fn xoip_variants() {
    let c = ok(req("X-OIP: 203.0.113.9\r\nFoo: a:b\r\n"));
    assert_eq!(
        (s(c.originator_ip), c.originator_port),
        ("203.0.113.9", 0),
        "no colon crossing into Foo"
    );
    let c = ok(req("X-OIP: 203.0.113.9: 7000xyz\r\n"));
    assert_eq!(
        (s(c.originator_ip), c.originator_port),
        ("203.0.113.9", 7000)
    );
    let c = ok(req("X-OIP: h:99999\r\n"));
    assert_eq!(c.originator_port, 0);
}

#[test]
fn contact_star_and_forms() {
    let c = ok(corpus!("register_contact_star.sip"));
    assert_eq!(
        (s(c.contact_user), s(c.contact_ip), c.contact_port),
        ("*", "", 0)
    );

    let c = ok(req(
        "Contact: sip:carol@198.51.100.1:5070;expires=30, <sip:x@y>\r\n",
    ));
    assert_eq!(
        (s(c.contact_user), s(c.contact_ip), c.contact_port),
        ("carol", "198.51.100.1", 5070)
    );
    let c = ok(req(
        "m: \"A, B\" <sip:ab@host>\r\nContact: <sip:second@h>\r\n",
    ));
    assert_eq!(s(c.contact_user), "ab", "first Contact header only");
}

#[test]
fn utf8_display_names() {
    let c = ok(corpus!("utf8_display_names.sip"));
    assert_eq!((s(c.from_user), s(c.from_tag)), ("notifier", "ü1"));
    assert_eq!(
        (s(c.to_user), s(c.to_domain), s(c.to_tag)),
        ("jose", "example.org", "x2")
    );
    assert_eq!(s(c.callid), "utf8-ñ@example.org");
    assert_eq!(s(c.user_agent), "Téléphone/1.0 (ünïcode)");
    assert_eq!((s(c.contact_ip), c.contact_port), ("198.51.100.20", 5061));
}

#[test]
fn callid_aleg_list_order_and_matching() {
    let custom = || ["Mac".to_owned(), "IP".to_owned(), "Port".to_owned()];
    let cfg = ExtractConfig::new(ExtractConfig::parse_aleg_list("X-CID;X-Leg-ID"), custom());
    let m = req("X-Leg-ID: leg\r\nX-CID: cid\r\n");
    assert_eq!(
        s(extract(m, &cfg).unwrap().callid_aleg),
        "cid",
        "list order, not message order"
    );
    let m = req("X-LEG-id: leg\r\n");
    assert_eq!(s(extract(m, &cfg).unwrap().callid_aleg), "leg");
    let cfg = ExtractConfig::new(vec![], custom());
    assert_eq!(
        s(extract(req("X-CID: c\r\n"), &cfg).unwrap().callid_aleg),
        ""
    );
}

#[test]
fn parse_aleg_list_rules() {
    assert_eq!(ExtractConfig::parse_aleg_list("X-CID"), vec!["X-CID"]);
    assert_eq!(ExtractConfig::parse_aleg_list("A;;B;"), vec!["A", "B"]);
    assert!(ExtractConfig::parse_aleg_list(";;;").is_empty());
    assert!(ExtractConfig::parse_aleg_list("").is_empty());
    let many: Vec<String> = (0..20).map(|i| format!("H{i}")).collect();
    assert_eq!(ExtractConfig::parse_aleg_list(&many.join(";")).len(), 16);
}

#[test]
fn custom_fields_configurable_and_empty_name() {
    let cfg = ExtractConfig::new(
        vec!["X-CID".to_owned()],
        ["X-Tenant".into(), String::new(), "Via".into()],
    );
    let m = req("X-Tenant: acme\r\n");
    let c = extract(m, &cfg).unwrap();
    assert_eq!(s(c.custom_field1), "acme");
    assert_eq!(s(c.custom_field2), "");
    assert_eq!(
        s(c.custom_field3),
        "SIP/2.0/UDP h.example.com;branch=z9hG4bK1"
    );
}

#[test]
fn bodies_keep_trailing_spaces_but_not_crlf() {
    let c = ok(req("User-Agent:    spaced ua   \r\n"));
    assert_eq!(
        s(c.user_agent),
        "spaced ua   ",
        "Kamailio trim_r only cuts CR/LF"
    );
}

#[test]
fn via_first_line_body_with_several_params() {
    let m = b"ACK sip:bob@192.0.2.4 SIP/2.0\r\n\
        Via: SIP/2.0/UDP a.example.com;branch=z9hG4bKa, SIP/2.0/UDP b.example.com;branch=z9hG4bKb\r\n\
        Via: SIP/2.0/UDP c.example.com;branch=z9hG4bKc\r\n\
        From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>;tag=2\r\n\
        Call-ID: ack-1\r\nCSeq: 1 ACK\r\n\r\n";
    let c = ok(m);
    assert_eq!(
        s(c.via_1),
        "SIP/2.0/UDP a.example.com;branch=z9hG4bKa, SIP/2.0/UDP b.example.com;branch=z9hG4bKb"
    );
    assert_eq!(s(c.via_1_branch), "z9hG4bKa");
}

#[test]
fn many_methods() {
    for method in [
        "ACK",
        "BYE",
        "CANCEL",
        "INFO",
        "NOTIFY",
        "OPTIONS",
        "PRACK",
        "PUBLISH",
        "REFER",
        "SUBSCRIBE",
        "UPDATE",
        "MESSAGE",
        "X-CUSTOM",
    ] {
        let m = format!(
            "{method} sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=b\r\n\
             From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c\r\nCSeq: 5 {method}\r\n\r\n"
        );
        let c = ok(m.as_bytes());
        assert_eq!(s(c.method), method);
        assert_eq!(s(c.cseq_method), method);
    }
    for (code, reason) in [
        ("100", "Trying"),
        ("180", "Ringing"),
        ("302", "Moved Temporarily"),
        ("404", "Not Found"),
        ("503", "Service Unavailable"),
        ("603", "Decline"),
        ("200", ""),
    ] {
        let m = format!(
            "SIP/2.0 {code} {reason}\r\nVia: SIP/2.0/UDP h;branch=b\r\n\
             From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>;tag=2\r\nCall-ID: c\r\nCSeq: 5 INVITE\r\n\r\n"
        );
        let c = ok(m.as_bytes());
        assert_eq!((s(c.method), s(c.reply_reason)), (code, reason));
    }
}

#[test]
fn header_block_without_blank_line_is_accepted() {
    let m = b"BYE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=x\r\nFrom: <sip:a@h>;tag=1\r\n\
              To: <sip:b@h>\r\nCall-ID: nb\r\nCSeq: 2 BYE\r\n";
    assert_eq!(s(ok(m).callid), "nb");
}

// ---- errors (strict) and capture_bad_msgs ----

#[test]
fn bad_from_uri() {
    let msg = corpus!("bad_from_uri.sip");
    assert!(matches!(
        extract(msg, &strict()),
        Err(SipError::BadFromUri { .. })
    ));
    let c = extract(msg, &lax()).unwrap();
    assert!(c.bad);
    assert_eq!((s(c.from_user), s(c.from_domain)), ("", ""));
    assert_eq!(
        s(c.from_tag),
        "bf1",
        "the tag comes from the header, not the URI"
    );
    assert_eq!(s(c.contact_user), "alice");
}

#[test]
fn bad_request_uri_drops_even_with_capture_bad_msgs() {
    let msg = corpus!("bad_request_uri.sip");
    assert_eq!(
        extract(msg, &strict()),
        Err(SipError::BadRequestUri { offset: 7 })
    );
    assert_eq!(
        extract(msg, &lax()),
        Err(SipError::BadRequestUri { offset: 7 })
    );
}

#[test]
fn missing_callid_text_search() {
    let msg = corpus!("no_callid.sip");
    let e = extract(msg, &strict()).unwrap_err();
    assert_eq!(e.reason(), "bad_header");
    let c = extract(msg, &lax()).unwrap();
    assert!(c.bad);
    assert_eq!(s(c.callid), "found-by-text-search@atlanta.example.com");

    // No header error and no Call-ID: strict drops (core sanity check), lax searches the rest.
    let m = b"OPTIONS sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=x\r\nFrom: <sip:a@h>;tag=1\r\n\
              To: <sip:b@h>\r\nCSeq: 2 OPTIONS\r\n\r\n";
    assert_eq!(
        extract(m, &strict()),
        Err(SipError::MissingHeader { name: "Call-ID" })
    );
    assert_eq!(s(extract(m, &lax()).unwrap().callid), "");
    // The search is case-sensitive and wants the long form.
    let m2 = b"OPTIONS sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=x\r\nFrom: <sip:a@h>;tag=1\r\n\
              To: <sip:b@h>\r\nCSeq: 2 OPTIONS\r\nBad Line\r\ncall-id: lower\r\n\r\n";
    assert_eq!(s(extract(m2, &lax()).unwrap().callid), "");
}

#[test]
fn duplicate_callid() {
    let msg = corpus!("duplicate_callid.sip");
    assert!(matches!(
        extract(msg, &strict()),
        Err(SipError::DuplicateHeader {
            name: "Call-ID",
            ..
        })
    ));
    let c = extract(msg, &lax()).unwrap();
    assert!(c.bad);
    assert_eq!(s(c.callid), "first@atlanta.example.com");
    assert_eq!(s(c.cseq), "", "headers after the error are not seen");
}

#[test]
fn bad_contact() {
    let msg = corpus!("bad_contact.sip");
    assert!(matches!(
        extract(msg, &strict()),
        Err(SipError::BadContact { .. })
    ));
    let c = extract(msg, &lax()).unwrap();
    assert!(c.bad);
    assert_eq!(s(c.contact_user), "");
    assert_eq!(
        s(c.user_agent),
        "AfterContact/1.0",
        "a bad Contact body does not stop the header pass"
    );

    let bad_uri = req("Contact: <sip:alice@bad_host>\r\n");
    assert!(matches!(
        extract(bad_uri, &strict()),
        Err(SipError::BadContactUri { .. })
    ));
    assert_eq!(s(extract(bad_uri, &lax()).unwrap().contact_ip), "");
}

#[test]
fn truncated_message() {
    let msg = corpus!("truncated.sip");
    assert!(matches!(
        extract(msg, &strict()),
        Err(SipError::NoHeaderEnd { .. })
    ));
    let c = extract(msg, &lax()).unwrap();
    assert!(c.bad);
    assert_eq!(s(c.callid), "a84b4c76e66710@pc33.atlanta.example.com");
    assert_eq!(s(c.cseq), "");
}

#[test]
fn bad_to_and_from_bodies() {
    let m =
        b"BYE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=x\r\nFrom: Alice Smith\r\n\
              To: <sip:b@h>\r\nCall-ID: x\r\nCSeq: 2 BYE\r\n\r\n";
    assert!(matches!(
        extract(m, &strict()),
        Err(SipError::BadFrom { .. })
    ));
    let m = b"BYE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=x\r\nFrom: <sip:a@h>;tag=1\r\n\
              To: <sip:b@h> trailing\r\nCall-ID: x\r\nCSeq: 2 BYE\r\n\r\n";
    assert!(matches!(extract(m, &strict()), Err(SipError::BadTo { .. })));
    let m = b"BYE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=x\r\nFrom: <sip:a@h>;tag=1\r\n\
              To: <mailto:b@h>\r\nCall-ID: x\r\nCSeq: 2 BYE\r\n\r\n";
    assert!(matches!(
        extract(m, &strict()),
        Err(SipError::BadToUri { .. })
    ));
    let c = extract(m, &lax()).unwrap();
    assert!(c.bad && c.to_user.is_empty());
}

#[test]
fn start_line_and_required_header_errors() {
    assert_eq!(extract(b"", &strict()), Err(SipError::TooShort { len: 0 }));
    assert_eq!(
        extract(b"hello world, this is not sip\r\n\r\n", &lax()),
        Err(SipError::BadStartLine { offset: 0 })
    );
    let no_via = b"BYE sip:b@example.com SIP/2.0\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: x\r\nCSeq: 2 BYE\r\n\r\n";
    assert_eq!(
        extract(no_via, &strict()),
        Err(SipError::MissingHeader { name: "Via" })
    );
    let c = extract(no_via, &lax()).unwrap();
    assert_eq!(
        (s(c.via_1), s(c.via_1_branch)),
        ("", ""),
        "Kamailio would crash here; we leave it empty"
    );
    let bad_via = req("").to_vec();
    let bad_via = String::from_utf8(bad_via)
        .unwrap()
        .replace("SIP/2.0/UDP h.example.com", "SIP/2.0/UDP");
    assert!(matches!(
        extract(bad_via.as_bytes(), &strict()),
        Err(SipError::BadVia { .. })
    ));
    let dup_from = req("From: <sip:x@y>\r\n");
    assert!(matches!(
        extract(dup_from, &strict()),
        Err(SipError::DuplicateHeader { name: "From", .. })
    ));
    let bad_len = String::from_utf8(req("").to_vec())
        .unwrap()
        .replace("Content-Length: 0", "Content-Length: zero");
    assert!(matches!(
        extract(bad_len.as_bytes(), &strict()),
        Err(SipError::BadNumber { .. })
    ));
    for e in [
        SipError::TooShort { len: 0 },
        SipError::MissingHeader { name: "Via" },
        SipError::BadVia { offset: 1 },
    ] {
        assert!(!e.reason().is_empty() && !e.to_string().is_empty());
    }
}

#[test]
fn every_corpus_file_is_handled_without_panic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/sip");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let _ = extract(&bytes, &strict());
        let _ = extract(&bytes, &lax());
        count += 1;
    }
    assert!(count >= 15);
}

fn valid_messages() -> Vec<&'static [u8]> {
    vec![
        corpus!("invite.sip"),
        corpus!("reply_200_invite.sip"),
        corpus!("folded_headers.sip"),
        corpus!("compact_forms.sip"),
        corpus!("utf8_display_names.sip"),
        corpus!("tel_uri.sip"),
        corpus!("ipv6.sip"),
    ]
}

#[test]
fn every_truncation_is_handled() {
    for msg in valid_messages() {
        for len in 0..=msg.len() {
            let cut = &msg[..len];
            for cfg in [strict(), lax()] {
                if let Ok(c) = extract(cut, &cfg) {
                    // Every borrowed column lies inside the cut message.
                    assert!(c.callid.len() <= cut.len());
                }
            }
        }
    }
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = extract(&bytes, &strict());
        let _ = extract(&bytes, &lax());
    }

    #[test]
    fn fast_paths_agree_with_general_paths(bytes in proptest::collection::vec(any::<u8>(), 0..60)) {
        assert_fast_paths_agree(&bytes);
    }

    #[test]
    fn never_panics_on_mutated_messages(idx in 0usize..7, edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut msg = valid_messages()[idx].to_vec();
        for (at, byte) in edits {
            let i = at.index(msg.len());
            msg[i] = byte;
        }
        let _ = extract(&msg, &strict());
        let _ = extract(&msg, &lax());
    }

    #[test]
    fn sip_structured_noise(
        method in "[A-Z]{1,10}",
        user in "[a-zA-Z0-9+._;=-]{0,12}",
        host in "[a-z0-9.\\[\\]:-]{0,20}",
        hdrs in proptest::collection::vec(("[A-Za-z-]{1,12}", "[ -~]{0,40}"), 0..10),
    ) {
        let mut m = format!("{method} sip:{user}@{host} SIP/2.0\r\nVia: SIP/2.0/UDP {host};branch=z\r\n");
        for (n, v) in hdrs {
            m.push_str(&format!("{n}: {v}\r\n"));
        }
        m.push_str("\r\n");
        let _ = extract(m.as_bytes(), &strict());
        let _ = extract(m.as_bytes(), &lax());
    }
}
