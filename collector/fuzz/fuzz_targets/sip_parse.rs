//! SIP column extraction: never panics; every parser fast path agrees with its general path;
//! every borrowed column lies inside the input; strict
//! success implies the same columns with `capture_bad_msgs` (which only turns drops into empty
//! columns); a lax drop implies a strict drop; topoh unmask inverts mask.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipcapture_collector_fuzz::within;

#[path = "../../src/sip/mod.rs"]
#[allow(dead_code)]
mod sip;

use sip::{ExtractConfig, SipColumns, TopohCodec, TopohConfig, extract};

fuzz_target!(|data: &[u8]| {
    // The speed fast paths (header names, sip: URIs, Via, name-addr, Contact) must agree with
    // the general state machines on every input.
    sip::assert_fast_paths_agree(data);
    let strict = ExtractConfig::kamailio_defaults();
    let mut lax = ExtractConfig::kamailio_defaults();
    lax.capture_bad_msgs = true;
    let s = extract(data, &strict);
    let l = extract(data, &lax);
    if let Ok(c) = &s {
        check_columns(data, c);
        assert!(!c.bad);
        assert_eq!(l.as_ref().ok(), Some(c), "strict success must equal lax");
    }
    if let Ok(c) = &l {
        check_columns(data, c);
    } else {
        assert!(s.is_err(), "lax drop must be a strict drop");
    }
    if let Err(e) = &l {
        assert!(!e.reason().is_empty());
    }

    // topoh: the Call-ID round trip through a codec built from fuzzed key material.
    if let Ok(c) = &l
        && !c.callid.is_empty()
    {
        let key = String::from_utf8_lossy(data.get(..data.len().min(16)).unwrap_or_default());
        let codec = TopohCodec::new(&TopohConfig {
            mask_key: key.into_owned(),
            callid_prefix: "!!:".into(),
        });
        assert_eq!(
            codec.unmask(&codec.mask(c.callid)).as_deref(),
            Some(c.callid)
        );
    }
    let _ = sip::topoh_unmask(data, &TopohConfig::kamailio_defaults());
});

fn check_columns(data: &[u8], c: &SipColumns<'_>) {
    for col in [
        c.method,
        c.reply_reason,
        c.ruri,
        c.ruri_user,
        c.ruri_domain,
        c.from_user,
        c.from_domain,
        c.from_tag,
        c.to_user,
        c.to_domain,
        c.to_tag,
        c.pid_user,
        c.auth_user,
        c.callid,
        c.callid_aleg,
        c.via_1,
        c.via_1_branch,
        c.cseq,
        c.cseq_method,
        c.reason,
        c.content_type,
        c.user_agent,
        c.contact_ip,
        c.originator_ip,
        c.rtp_stat,
        c.diversion,
        c.custom_field1,
        c.custom_field2,
        c.custom_field3,
    ] {
        assert!(within(data, col), "column outside the input");
    }
    // `Contact: *` is the only column that is not borrowed from the input.
    assert!(c.contact_user == b"*" || within(data, c.contact_user));
    match c.msg_type {
        1 => assert!(!c.ruri.is_empty() && !c.method.is_empty()),
        2 => assert!(
            c.method.len() == 3 && c.method.iter().all(u8::is_ascii_digit) && c.ruri.is_empty()
        ),
        other => panic!("msg_type {other}"),
    }
}
