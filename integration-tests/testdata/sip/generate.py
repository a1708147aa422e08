#!/usr/bin/env python3
"""Writes the SIP corpus of the Kamailio differential test (kamailio_diff.rs): one message per
`NN_name.sip` file, CRLF line endings. Lines are written with `\n` here and converted; a body is
separated by a blank line and `Content-Length` / `l` is filled in where the text says `{len}`.
Re-run after editing: `python3 generate.py` in this directory (it rewrites every *.sip file)."""
import os
import glob

HERE = os.path.dirname(os.path.abspath(__file__))

SDP = """v=0
o=alice 2890844526 2890844526 IN IP4 192.0.2.101
s=-
c=IN IP4 192.0.2.101
t=0 0
m=audio 49172 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
"""

VIA = "Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK74bf9"
FROM = "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl"
TO = "To: Bob <sip:bob@biloxi.example.com>"
TO_T = "To: Bob <sip:bob@biloxi.example.com>;tag=8321234356"
CID = "Call-ID: 3848276298220188511@atlanta.example.com"

M = {}

M["01_invite_sdp"] = f"""INVITE sip:bob@biloxi.example.com SIP/2.0
{VIA}
Max-Forwards: 70
{TO}
{FROM}
{CID}
CSeq: 1 INVITE
Contact: <sip:alice@192.0.2.101:5062;transport=udp>
User-Agent: Linphone/5.2.0 (belle-sip/5.2.0)
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, UPDATE
Supported: replaces, outbound, timer
Content-Type: application/sdp
Content-Length: {{len}}

{SDP}"""

M["02_reply_100_trying"] = f"""SIP/2.0 100 Trying
{VIA};received=192.0.2.101
{TO}
{FROM}
{CID}
CSeq: 1 INVITE
Server: Asterisk PBX 18.10.0
Content-Length: 0

"""

M["03_reply_180_ringing"] = f"""SIP/2.0 180 Ringing
{VIA};received=192.0.2.101
{TO_T}
{FROM}
{CID}
CSeq: 1 INVITE
Contact: <sip:bob@192.0.2.4>
Content-Length: 0

"""

M["04_reply_183_session_progress"] = f"""SIP/2.0 183 Session Progress
{VIA};received=192.0.2.101
{TO_T}
{FROM}
{CID}
CSeq: 1 INVITE
Contact: "Bob" <sip:bob@192.0.2.4:5080>;expires=3600
Require: 100rel
RSeq: 1
Content-Type: application/sdp
Content-Length: {{len}}

{SDP.replace('alice', 'bob').replace('192.0.2.101', '192.0.2.4')}"""

M["05_reply_200_invite"] = f"""SIP/2.0 200 OK
{VIA};received=192.0.2.101
Record-Route: <sip:p1.example.com;lr>
{TO_T}
{FROM}
{CID}
CSeq: 1 INVITE
Contact: <sip:bob@192.0.2.4:5080>
User-Agent: Grandstream GXP2170 1.0.11.3
Content-Type: application/sdp
Content-Length: {{len}}

{SDP.replace('alice', 'bob').replace('192.0.2.101', '192.0.2.4')}"""

M["06_ack"] = f"""ACK sip:bob@192.0.2.4:5080 SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bKnashds9
Max-Forwards: 70
Route: <sip:p1.example.com;lr>
{TO_T}
{FROM}
{CID}
CSeq: 1 ACK
Content-Length: 0

"""

M["07_bye_rtp_stat"] = f"""BYE sip:alice@192.0.2.101:5062 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.4:5080;branch=z9hG4bKnashds10;rport
Max-Forwards: 70
From: Bob <sip:bob@biloxi.example.com>;tag=8321234356
To: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
{CID}
CSeq: 231 BYE
X-RTP-Stat: CS=0;PS=433;ES=442;OS=69280;SP=0/0;SO=0;QS=-;PR=441;ER=442;OR=70560;CR=0;SR=0;QR=-;PL=0,0;BL=0;LS=0;RB=0/0;SB=-/-;EN=PCMU;DE=PCMU;JI=0,0;DL=20,20,20;IP=192.0.2.4:10000,192.0.2.101:49172
Reason: Q.850;cause=16;text="Normal call clearing"
Content-Length: 0

"""

M["08_reply_200_bye_rtp_priority"] = f"""SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.4:5080;branch=z9hG4bKnashds10;rport=5080
From: Bob <sip:bob@biloxi.example.com>;tag=8321234356
To: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
{CID}
CSeq: 231 BYE
P-RTP-Stat: PS=100,OS=16000,PR=99,OR=15840,PL=1,JI=3,LA=0,DU=2
X-RTP-Stat-Add: DQ=99;DSS=0;DS=0;PLCS=0;JS=1
X-RTP-Stat: CS=0;PS=433
Content-Length: 0

"""

M["09_cancel"] = f"""CANCEL sip:bob@biloxi.example.com SIP/2.0
{VIA}
Max-Forwards: 70
{TO}
{FROM}
{CID}
CSeq: 1 CANCEL
Reason: SIP;cause=487;text="Request Terminated"
Content-Length: 0

"""

M["10_reply_487"] = f"""SIP/2.0 487 Request Terminated
{VIA}
{TO_T}
{FROM}
{CID}
CSeq: 1 INVITE
Content-Length: 0

"""

M["11_register_auth_user_at_domain"] = """REGISTER sip:registrar.biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: Bob <sip:bob@biloxi.example.com>;tag=456248
Call-ID: 843817637684230@998sdasdh09
CSeq: 1826 REGISTER
Contact: <sip:bob@192.0.2.4>
Expires: 7200
Authorization: Digest username="bob@biloxi.example.com", realm="biloxi.example.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="sip:registrar.biloxi.example.com", response="6629fae49393a05397450978507c4ef1", algorithm=MD5
User-Agent: Yealink SIP-T46S 66.86.0.15
Content-Length: 0

"""

M["12_reply_401_register"] = """SIP/2.0 401 Unauthorized
Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7;received=192.0.2.4
To: Bob <sip:bob@biloxi.example.com>;tag=2493k59kd
From: Bob <sip:bob@biloxi.example.com>;tag=456248
Call-ID: 843817637684230@998sdasdh09
CSeq: 1826 REGISTER
WWW-Authenticate: Digest realm="biloxi.example.com", qop="auth", nonce="ea9c8e88df84f1cec4341ae6cbe5a359", opaque="", stale=FALSE, algorithm=MD5
Content-Length: 0

"""

M["13_register_plain_user_multi_contact"] = """REGISTER sip:biloxi.example.com SIP/2.0
Via: SIP/2.0/TCP 192.0.2.4:5060;branch=z9hG4bKreg2
Max-Forwards: 70
To: <sip:carol@biloxi.example.com>
From: <sip:carol@biloxi.example.com>;tag=reg2tag
Call-ID: reg-multi-contact@192.0.2.4
CSeq: 2 REGISTER
Contact: <sip:carol@192.0.2.5:5070;transport=tcp>;q=0.7;expires=600, "Carol Mobile" <sip:carol-m@198.51.100.7:5090>;q=0.3
Contact: <sip:carol@203.0.113.9>
Authorization: Digest username="carol", realm="biloxi.example.com", nonce="ea9c8e88df84f1cec4341ae6cbe5a359", uri="sip:biloxi.example.com", response="dfe56131d1958046689d83306477ecc"
Content-Length: 0

"""

M["14_register_contact_star"] = """REGISTER sip:biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKunreg
Max-Forwards: 70
To: <sip:carol@biloxi.example.com>
From: <sip:carol@biloxi.example.com>;tag=unreg1
Call-ID: reg-star@192.0.2.4
CSeq: 3 REGISTER
Contact: *
Expires: 0
Content-Length: 0

"""

M["15_reply_200_register_contacts"] = """SIP/2.0 200 OK
Via: SIP/2.0/TCP 192.0.2.4:5060;branch=z9hG4bKreg2;received=192.0.2.4
To: <sip:carol@biloxi.example.com>;tag=37GkEhwl6
From: <sip:carol@biloxi.example.com>;tag=reg2tag
Call-ID: reg-multi-contact@192.0.2.4
CSeq: 2 REGISTER
Contact: <sip:carol@192.0.2.5:5070;transport=tcp>;expires=600,<sip:carol-m@198.51.100.7:5090>;expires=600,
 <sip:carol-w@203.0.113.20:5092>;expires=600
Date: Wed, 04 Mar 2026 12:00:00 GMT
Content-Length: 0

"""

M["16_invite_proxy_auth_and_auth"] = f"""INVITE sip:+15551234567@gw.example.net;user=phone SIP/2.0
Via: SIP/2.0/UDP 192.0.2.101:5062;branch=z9hG4bKpa1;rport
Max-Forwards: 70
From: "Alice" <sip:alice@atlanta.example.com>;tag=pa1
To: <sip:+15551234567@gw.example.net;user=phone>
Call-ID: proxy-auth-1@192.0.2.101
CSeq: 2 INVITE
Contact: <sip:alice@192.0.2.101:5062>
Authorization: Digest username="www-user", realm="atlanta.example.com", nonce="abc", uri="sip:+15551234567@gw.example.net", response="00"
Proxy-Authorization: Digest username="proxyuser@atlanta.example.com", realm="atlanta.example.com", nonce="def", uri="sip:+15551234567@gw.example.net", response="11"
Content-Type: application/sdp
Content-Length: {{len}}

{SDP}"""

M["17_reply_407"] = """SIP/2.0 407 Proxy Authentication Required
Via: SIP/2.0/UDP 192.0.2.101:5062;branch=z9hG4bKpa0;rport=5062;received=192.0.2.101
From: "Alice" <sip:alice@atlanta.example.com>;tag=pa1
To: <sip:+15551234567@gw.example.net;user=phone>;tag=as407
Call-ID: proxy-auth-1@192.0.2.101
CSeq: 1 INVITE
Proxy-Authenticate: Digest realm="atlanta.example.com", nonce="def", qop="auth"
Content-Length: 0

"""

M["18_reply_486_reason"] = f"""SIP/2.0 486 Busy Here
{VIA}
{TO_T}
{FROM}
Call-ID: busy-1@atlanta.example.com
CSeq: 1 INVITE
Reason: Q.850;cause=17;text="User busy"
Content-Length: 0

"""

M["19_reply_503_retry_after"] = f"""SIP/2.0 503 Service Unavailable
{VIA}
{TO_T}
{FROM}
Call-ID: unavail-1@atlanta.example.com
CSeq: 1 INVITE
Retry-After: 120
Warning: 399 gw.example.net "Trunk overloaded"
Content-Length: 0

"""

M["20_options_compact"] = """OPTIONS sip:carol@chicago.example.com SIP/2.0
v: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKhjhs8ass877
Max-Forwards: 70
t: sip:carol@chicago.example.com
f: sip:alice@atlanta.example.com;tag=1928301774
i: a84b4c76e66710
CSeq: 63104 OPTIONS
m: <sip:alice@pc33.atlanta.example.com>
k: replaces
Accept: application/sdp
l: 0

"""

M["21_subscribe_compact"] = """SUBSCRIBE sip:presentity@biloxi.example.com SIP/2.0
v: SIP/2.0/TCP watcherhost.example.com;branch=z9hG4bKnashds7
Max-Forwards: 70
t: <sip:presentity@biloxi.example.com>
f: <sip:watcher@example.com>;tag=xfg9
i: 2010@watcherhost.example.com
CSeq: 17766 SUBSCRIBE
m: <sip:watcher@watcherhost.example.com>
o: presence
u: presence, dialog
s: presence watch
x: 1800;refresher=uac
y: eyJhbGciOiJFUzI1NiJ9.eyJvcmlnIjp7fX0.c2ln;info=<https://cert.example.org/passport.cer>;alg=ES256;ppt=shaken
d: proxy, recurse
Expires: 600
Accept: application/pidf+xml
l: 0

"""

M["22_notify_compact_body"] = """NOTIFY sip:watcher@watcherhost.example.com SIP/2.0
v: SIP/2.0/TCP server.biloxi.example.com;branch=z9hG4bKnashds8
Max-Forwards: 70
f: <sip:presentity@biloxi.example.com>;tag=ffd2
t: <sip:watcher@example.com>;tag=xfg9
i: 2010@watcherhost.example.com
Event: presence
Subscription-State: active;expires=599
CSeq: 8775 NOTIFY
m: <sip:server.biloxi.example.com>
c: application/pidf+xml
e: identity
l: {len}

<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:presentity@biloxi.example.com">
<tuple id="a1"><status><basic>open</basic></status></tuple>
</presence>
"""

M["23_message_utf8"] = """MESSAGE sip:user2@domain.example.com SIP/2.0
Via: SIP/2.0/TCP user1pc.domain.example.com;branch=z9hG4bK776sgdkse
Max-Forwards: 70
From: "Jürgen Müller 日本" <sip:j%C3%BCrgen@domain.example.com>;tag=49583
To: "Zoë" <sip:user2@domain.example.com>
Call-ID: asd88asd77a@1.2.3.4
CSeq: 1 MESSAGE
Content-Type: text/plain;charset=UTF-8
Content-Length: {len}

Grüße aus Köln — ça va? 你好
"""

M["24_info_dtmf"] = f"""INFO sip:bob@192.0.2.4:5080 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.101:5062;branch=z9hG4bKinfo1
Max-Forwards: 70
{TO_T}
{FROM}
{CID}
CSeq: 2 INFO
Contact: <sip:alice@192.0.2.101:5062>
Content-Type: application/dtmf-relay
Content-Length: {{len}}

Signal=5
Duration=160
"""

M["25_update"] = f"""UPDATE sip:bob@192.0.2.4:5080 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.101:5062;branch=z9hG4bKupd1
Max-Forwards: 70
{TO_T}
{FROM}
{CID}
CSeq: 3 UPDATE
Contact: <sip:alice@192.0.2.101:5062>
Session-Expires: 1800;refresher=uac
Content-Length: 0

"""

M["26_prack"] = f"""PRACK sip:bob@192.0.2.4:5080 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.101:5062;branch=z9hG4bKprack1
Max-Forwards: 70
{TO_T}
{FROM}
{CID}
CSeq: 2 PRACK
RAck: 1 1 INVITE
Content-Length: 0

"""

M["27_refer_compact"] = """REFER sip:bob@192.0.2.4:5080 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.101:5062;branch=z9hG4bKrefer1
Max-Forwards: 70
To: <sip:bob@biloxi.example.com>;tag=8321234356
From: <sip:alice@atlanta.example.com>;tag=9fxced76sl
i: refer-1@atlanta.example.com
CSeq: 4 REFER
r: <sip:carol@chicago.example.com?Replaces=12345%40192.0.2.5%3Bto-tag%3D12345%3Bfrom-tag%3D5FFE-3994>
b: <sip:alice@atlanta.example.com>
m: <sip:alice@192.0.2.101:5062>
l: 0

"""

M["28_publish"] = """PUBLISH sip:presentity@example.com SIP/2.0
Via: SIP/2.0/UDP pua.example.com;branch=z9hG4bK652hsge
To: <sip:presentity@example.com>
From: <sip:presentity@example.com>;tag=1234wxyz
Call-ID: 81818181@pua.example.com
CSeq: 1 PUBLISH
Max-Forwards: 70
Expires: 3600
Event: presence
SIP-If-Match: dx200xyz
Content-Type: application/pidf+xml
Content-Length: {len}

<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:presentity@example.com"/>
"""

M["29_folded_headers"] = """INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;
 branch=z9hG4bKfold1
Max-Forwards: 70
To: Bob
 <sip:bob@biloxi.example.com>
From: Alice
\t<sip:alice@atlanta.example.com>;tag=fold1
Call-ID: folded-1@atlanta.example.com
CSeq: 1 INVITE
Subject: I know you're there,
   pick up the phone
   and talk to me!
User-Agent: Folded
 Agent/1.0
Contact: <sip:alice@192.0.2.101>
Content-Length: 0

"""

M["30_quoted_display_escapes"] = """INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKquote1
Max-Forwards: 70
To: "Bob \\"the Builder\\" <b>" <sip:bob@biloxi.example.com>
From: "Alice O\\\\'Hara, Esq." <sip:alice.o@atlanta.example.com>;tag=q1
Call-ID: quoted-1@atlanta.example.com
CSeq: 1 INVITE
Contact: "A, B \\"C\\"" <sip:alice@192.0.2.101:5062>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"
Content-Length: 0

"""

M["31_vias_one_line"] = """OPTIONS sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP p2.example.com:5060;branch=z9hG4bKp2a, SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1a;received=192.0.2.3, SIP/2.0/UDP 192.0.2.101:5062;branch=z9hG4bKua1;rport=5062
Max-Forwards: 68
To: <sip:bob@biloxi.example.com>
From: <sip:alice@atlanta.example.com>;tag=v1
Call-ID: vias-one-line@192.0.2.101
CSeq: 1 OPTIONS
Content-Length: 0

"""

M["32_vias_separate_lines"] = """SIP/2.0 200 OK
Via: SIP/2.0/TCP p2.example.com:5060;branch=z9hG4bKp2b;received=192.0.2.2
Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1b
v: SIP/2.0/UDP 192.0.2.101:5062;branch=z9hG4bKua2
To: <sip:bob@biloxi.example.com>;tag=v2to
From: <sip:alice@atlanta.example.com>;tag=v2
Call-ID: vias-lines@192.0.2.101
CSeq: 7 OPTIONS
Allow: INVITE, ACK, BYE
Accept: application/sdp
Content-Length: 0

"""

M["33_pai_and_ppi"] = """INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKpai1
Max-Forwards: 70
To: <sip:bob@biloxi.example.com>
From: "Anonymous" <sip:anonymous@anonymous.invalid>;tag=pai1
Call-ID: pai-1@atlanta.example.com
CSeq: 1 INVITE
P-Preferred-Identity: <sip:preferred@atlanta.example.com>
P-Asserted-Identity: "Alice" <sip:asserted@atlanta.example.com>, <tel:+15551110000>
Privacy: id
Contact: <sip:alice@192.0.2.101>
Content-Length: 0

"""

M["34_ppi_only"] = """INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKppi1
Max-Forwards: 70
To: <sip:bob@biloxi.example.com>
From: <sip:alice@atlanta.example.com>;tag=ppi1
Call-ID: ppi-1@atlanta.example.com
CSeq: 1 INVITE
P-Preferred-Identity: "Alice Preferred" <sip:pref-only@atlanta.example.com>
Remote-Party-ID: "Alice" <sip:rpid-loser@atlanta.example.com>;party=calling;screen=yes
Contact: <sip:alice@192.0.2.101>
Content-Length: 0

"""

M["35_rpid_only"] = """INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKrpid1
Max-Forwards: 70
To: <sip:bob@biloxi.example.com>
From: <sip:alice@atlanta.example.com>;tag=rpid1
Call-ID: rpid-1@atlanta.example.com
CSeq: 1 INVITE
Remote-Party-ID: "Alice RPID" <sip:5551000@atlanta.example.com;user=phone>;party=calling;privacy=off;screen=no
Contact: <sip:alice@192.0.2.101>
Content-Length: 0

"""

M["36_pai_tel_first"] = """INVITE tel:+15551234567;phone-context=example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKtel1
Max-Forwards: 70
To: <tel:+15551234567>
From: <tel:+15559876543>;tag=tel1
Call-ID: tel-1@atlanta.example.com
CSeq: 1 INVITE
P-Asserted-Identity: <tel:+15559876543>
Contact: <sip:+15559876543@192.0.2.101:5062;user=phone>
Content-Length: 0

"""

M["37_xcid_aleg"] = """INVITE sip:+4930123456@carrier.example.net SIP/2.0
Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKbleg1
Max-Forwards: 69
To: <sip:+4930123456@carrier.example.net>
From: "SBC" <sip:+4930999@sbc.example.com>;tag=bleg1
Call-ID: b-leg-77f2@203.0.113.10
CSeq: 10 INVITE
X-CID: a-leg-3848276298220188511@atlanta.example.com
Contact: <sip:+4930999@203.0.113.10:5060>
Content-Length: 0

"""

M["38_custom_fields"] = """REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/UDP 10.0.0.42:5060;branch=z9hG4bKcust1
Max-Forwards: 70
To: <sip:1001@example.com>
From: <sip:1001@example.com>;tag=cust1
Call-ID: custom-fields-1@10.0.0.42
CSeq: 1 REGISTER
Contact: <sip:1001@10.0.0.42:5060>
Mac: 00:15:65:aa:bb:cc
IP: 10.0.0.42
Port: 5060
Content-Length: 0

"""

M["39_xoip_no_port"] = """OPTIONS sip:probe@example.com SIP/2.0
Via: SIP/2.0/UDP 10.0.0.42:5060;branch=z9hG4bKoip1
Max-Forwards: 70
To: <sip:probe@example.com>
From: <sip:monitor@example.com>;tag=oip1
Call-ID: xoip-noport@10.0.0.42
CSeq: 1 OPTIONS
X-OIP: 198.51.100.23
Content-Length: 0

"""

M["40_xoip_with_port"] = """OPTIONS sip:probe@example.com SIP/2.0
Via: SIP/2.0/UDP 10.0.0.42:5060;branch=z9hG4bKoip2
Max-Forwards: 70
To: <sip:probe@example.com>
From: <sip:monitor@example.com>;tag=oip2
Call-ID: xoip-port@10.0.0.42
CSeq: 1 OPTIONS
X-OIP: 198.51.100.23:5080
Content-Length: 0

"""

M["41_rtp_stat_variants_rxstat"] = """BYE sip:alice@192.0.2.101:5062 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.4:5080;branch=z9hG4bKrx1
Max-Forwards: 70
From: <sip:bob@biloxi.example.com>;tag=rx1b
To: <sip:alice@atlanta.example.com>;tag=rx1a
Call-ID: rtp-rxstat@192.0.2.4
CSeq: 2 BYE
RTP-RxStat: Total_Rx_Pkts=1000,Rx_Pkts_Lost=2,Remote_Rx_Pkts_Lost=0
X-NG-RTP-STATS: 0;0;1000;2
Content-Length: 0

"""

M["42_rtp_stat_siemens_t38"] = """BYE sip:alice@192.0.2.101:5062 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.4:5080;branch=z9hG4bKrx2
Max-Forwards: 70
From: <sip:bob@biloxi.example.com>;tag=rx2b
To: <sip:alice@atlanta.example.com>;tag=rx2a
Call-ID: rtp-siemens@192.0.2.4
CSeq: 2 BYE
X-Siemens-RTP-stats: hop=1;ts=12345;PS=100;OS=16000
X-RTP-Stat-T38: PT=1;PR=2
Content-Length: 0

"""

M["43_diversion"] = """INVITE sip:+15553330000@gw.example.net SIP/2.0
Via: SIP/2.0/UDP pbx.example.com;branch=z9hG4bKdiv1
Max-Forwards: 70
To: <sip:+15553330000@gw.example.net>
From: "Carol" <sip:+15551112222@pbx.example.com>;tag=div1
Call-ID: diversion-1@pbx.example.com
CSeq: 1 INVITE
Diversion: <sip:+15554440000@pbx.example.com>;reason=unconditional;counter=1;privacy=off, <sip:+15555550000@pbx.example.com>;reason=no-answer
Diversion: <sip:2000@pbx.example.com>;reason=user-busy
Contact: <sip:+15551112222@pbx.example.com>
Content-Length: 0

"""

M["44_sips_uris"] = """INVITE sips:bob@secure.biloxi.example.com:5061;transport=tls SIP/2.0
Via: SIP/2.0/TLS pc33.atlanta.example.com:5061;branch=z9hG4bKsips1
Max-Forwards: 70
To: "Bob" <sips:bob@secure.biloxi.example.com>
From: "Alice" <sips:alice@secure.atlanta.example.com:5061>;tag=sips1
Call-ID: sips-1@atlanta.example.com
CSeq: 1 INVITE
Contact: <sips:alice@192.0.2.101:5061;transport=tls>
Content-Length: 0

"""

M["45_ipv6"] = """INVITE sip:bob@[2001:db8::20]:5060 SIP/2.0
Via: SIP/2.0/UDP [2001:db8::10]:5060;branch=z9hG4bKv6a;rport
Max-Forwards: 70
To: <sip:bob@[2001:db8::20]>
From: "Alice v6" <sip:alice@[2001:db8::10]>;tag=v6a
Call-ID: ipv6-1@[2001:db8::10]
CSeq: 1 INVITE
Contact: <sip:alice@[2001:db8::10]:5062>
Content-Length: 0

"""

M["46_reply_200_ipv6_contact_no_port"] = """SIP/2.0 200 OK
Via: SIP/2.0/UDP [2001:db8::10]:5060;branch=z9hG4bKv6a;rport=5060
To: <sip:bob@[2001:db8::20]>;tag=v6b
From: "Alice v6" <sip:alice@[2001:db8::10]>;tag=v6a
Call-ID: ipv6-1@[2001:db8::10]
CSeq: 1 INVITE
Contact: <sip:bob@[2001:db8::20]>
Content-Length: 0

"""

BIG_SDP = SDP + "".join(
    f"a=candidate:{i} 1 UDP {2130706431 - i} 192.0.2.{100 + i} {40000 + 2 * i} typ host generation 0\n"
    for i in range(20)
) + "a=ice-ufrag:F7gI\na=ice-pwd:x9cml/YzichV2+XlhiMu8g\n" + "".join(
    f"a=crypto:{i} AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32\n"
    for i in range(1, 6)
)

M["47_large_invite"] = f"""INVITE sip:conference@media.example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.101:5062;branch=z9hG4bKbig1;rport
Max-Forwards: 70
To: <sip:conference@media.example.com>
From: "Big Alice" <sip:alice@atlanta.example.com>;tag=big1
Call-ID: large-invite-1@atlanta.example.com
CSeq: 1 INVITE
Contact: <sip:alice@192.0.2.101:5062>;+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>";reg-id=1
User-Agent: Big Client 1.0
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, UPDATE, PRACK
Supported: replaces, outbound, gruu, timer, 100rel, path, ice
Content-Type: application/sdp
Content-Length: {{len}}

{BIG_SDP}"""

M["48_broken_no_callid"] = """OPTIONS sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnocid
Max-Forwards: 70
To: <sip:bob@biloxi.example.com>
From: <sip:alice@atlanta.example.com>;tag=nocid
CSeq: 1 OPTIONS
Content-Length: 0

"""

M["49_broken_bad_from"] = """OPTIONS sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKbadfrom
Max-Forwards: 70
To: <sip:bob@biloxi.example.com>
From: "Unterminated <sip:alice@atlanta.example.com;tag=badfrom
Call-ID: bad-from-1@atlanta.example.com
CSeq: 1 OPTIONS
Content-Length: 0

"""

M["50_broken_bad_ruri"] = """OPTIONS sip:bob@@@:99999999 SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKbadruri
Max-Forwards: 70
To: <sip:bob@biloxi.example.com>
From: <sip:alice@atlanta.example.com>;tag=badruri
Call-ID: bad-ruri-1@atlanta.example.com
CSeq: 1 OPTIONS
Content-Length: 0

"""

M["51_lowercase_header_names"] = """INVITE sip:bob@biloxi.example.com SIP/2.0
via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKlower1
max-forwards: 70
to: <sip:bob@biloxi.example.com>
from: <sip:alice@atlanta.example.com>;tag=lower1
call-id: lower-1@atlanta.example.com
cseq: 1 INVITE
contact: <sip:alice@192.0.2.101>
user-agent: lowercase/1.0
x-cid: lower-aleg@atlanta.example.com
mac: 00:11:22:33:44:55
content-type: application/sdp
p-asserted-identity: <sip:lower-pai@atlanta.example.com>
content-length: 0

"""

M["52_reply_480_603_contact_no_user"] = """SIP/2.0 480 Temporarily Unavailable
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKta1
To: <sip:bob@biloxi.example.com>;tag=ta1to
From: <sip:alice@atlanta.example.com>;tag=ta1
Call-ID: unavailable-480@atlanta.example.com
CSeq: 5 INVITE
Contact: <sip:192.0.2.5:5070;transport=tcp>
Content-Length: 0

"""

M["53_reply_603_decline_no_reason_body"] = """SIP/2.0 603 Decline
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKdec1
To: sip:bob@biloxi.example.com;tag=dec1to
From: sip:alice@atlanta.example.com;tag=dec1
Call-ID: decline-603@atlanta.example.com
CSeq: 1 MESSAGE
Content-Length: 0

"""

M["54_subscribe_plain_auth_proxy_only"] = """SUBSCRIBE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKsub2
Max-Forwards: 70
To: <sip:bob@biloxi.example.com>
From: <sip:alice@atlanta.example.com>;tag=sub2
Call-ID: subscribe-2@atlanta.example.com
CSeq: 2 SUBSCRIBE
Event: dialog
Proxy-Authorization: Digest username="alice", realm="atlanta.example.com", nonce="n", uri="sip:bob@biloxi.example.com", response="r"
Contact: <sip:alice@192.0.2.101:5062;ob>
Expires: 3600
Content-Length: 0

"""

M["55_reply_200_notify_to_no_display"] = """SIP/2.0 200 OK
Via: SIP/2.0/TCP server.biloxi.example.com;branch=z9hG4bKnashds8;received=192.0.2.2
From: <sip:presentity@biloxi.example.com>;tag=ffd2
To: <sip:watcher@example.com>;tag=xfg9
i: 2010@watcherhost.example.com
CSeq: 8775 NOTIFY
Content-Length: 0

"""

M["56_message_ipv6_envelope"] = """MESSAGE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP [2001:db8::10];branch=z9hG4bKv6msg
Max-Forwards: 70
To: <sip:bob@biloxi.example.com>
From: <sip:alice@atlanta.example.com>;tag=v6msg
Call-ID: v6-message@2001:db8::10
CSeq: 1 MESSAGE
Content-Type: text/plain
Content-Length: {len}

hello over IPv6
"""

M["57_info_both_custom_and_xcid_list"] = """INFO sip:bob@192.0.2.4:5080 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.101:5062;branch=z9hG4bKinfo2
Max-Forwards: 70
To: <sip:bob@biloxi.example.com>;tag=i2to
From: <sip:alice@atlanta.example.com>;tag=i2
Call-ID: info-2@atlanta.example.com
CSeq: 3 INFO
X-CID: first-aleg@example.com
X-CID: second-aleg@example.com
Port: 5099
User-Agent:    spaces-around-value/1.0   
Content-Length: 0

"""

M["58_notify_refer_sipfrag"] = """NOTIFY sip:alice@192.0.2.101:5062 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.4:5080;branch=z9hG4bKnotref
Max-Forwards: 70
To: <sip:alice@atlanta.example.com>;tag=9fxced76sl
From: <sip:bob@biloxi.example.com>;tag=8321234356
Call-ID: refer-1@atlanta.example.com
CSeq: 5 NOTIFY
Event: refer
Subscription-State: terminated;reason=noresource
Content-Type: message/sipfrag;version=2.0
Content-Length: {len}

SIP/2.0 200 OK
"""

M["59_reply_202_refer"] = """SIP/2.0 202 Accepted
Via: SIP/2.0/UDP 192.0.2.101:5062;branch=z9hG4bKrefer1
To: <sip:bob@biloxi.example.com>;tag=8321234356
From: <sip:alice@atlanta.example.com>;tag=9fxced76sl
Call-ID: refer-1@atlanta.example.com
CSeq: 4 REFER
Contact: <sip:bob@192.0.2.4:5080>
Content-Length: 0

"""

M["60_reply_200_publish_etag"] = """SIP/2.0 200 OK
Via: SIP/2.0/UDP pua.example.com;branch=z9hG4bK652hsge
To: <sip:presentity@example.com>;tag=1a2b3c4d
From: <sip:presentity@example.com>;tag=1234wxyz
Call-ID: 81818181@pua.example.com
CSeq: 1 PUBLISH
SIP-ETag: dx200xyz
Expires: 1800
Content-Length: 0

"""

M["61_broken_folded_cseq"] = """OPTIONS sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKfoldcseq
Max-Forwards: 70
To: <sip:bob@biloxi.example.com>
From: <sip:alice@atlanta.example.com>;tag=foldcseq
Call-ID: folded-cseq@atlanta.example.com
CSeq: 1
 OPTIONS
Content-Length: 0

"""

M["62_contact_addr_spec_params"] = """REGISTER sip:biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.9:5064;branch=z9hG4bKaddrspec
Max-Forwards: 70
To: sip:dave@biloxi.example.com
From: sip:dave@biloxi.example.com;tag=addrspec
Call-ID: addr-spec-contact@192.0.2.9
CSeq: 1 REGISTER
Contact: sip:dave@192.0.2.9:5064;expires=60
Authorization: Digest username=dave, realm="biloxi.example.com", nonce="n", uri="sip:biloxi.example.com", response="r"
Content-Length: 0

"""

M["63_uri_password_params_tag_case"] = """INVITE sip:alice;day=tuesday@atlanta.example.com;transport=udp?subject=hi SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1:5060 ; received=198.51.100.1 ; branch = z9hG4bKspaces
Max-Forwards: 70
To: <sip:%61lice@atlanta.example.com>;Tag=UpperTag
From: <sip:bob:secret@biloxi.example.com:5070;user=ip>;TAG=mixedcase
Call-ID: uri-params-1@biloxi.example.com
CSeq: 1 INVITE
Contact: <sip:bob:secret@192.0.2.4:5070;transport=tcp>
Content-Length: 0

"""

M["64_header_space_before_colon"] = """MESSAGE sip:bob@biloxi.example.com SIP/2.0
Via : SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKspcolon
Max-Forwards: 70
To\t: <sip:bob@biloxi.example.com>
From : <sip:alice@atlanta.example.com>;tag=spcolon
Call-ID :   space-colon@atlanta.example.com
CSeq : 1 MESSAGE
User-Agent\t:\tTabbed UA
Content-Type : text/plain
Content-Length : {len}

hi
"""

M["65_reply_reason_spaces"] = """SIP/2.0 404   Not   Found Here
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnf
To: <sip:nobody@biloxi.example.com>;tag=nf1to
From: <sip:alice@atlanta.example.com>;tag=nf1
Call-ID: not-found-404@atlanta.example.com
CSeq: 1 INVITE
Content-Length: 0

"""

M["66_unknown_method_ruri_no_user"] = """FOO sip:192.0.2.20:5080 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKfoo
Max-Forwards: 70
To: <sip:192.0.2.20:5080>
From: <sip:192.0.2.10>;tag=foo1
Call-ID: unknown-method@192.0.2.10
CSeq: 1 FOO
Content-Length: 0

"""

M["67_uppercase_scheme_and_tel_from"] = """INVITE SIP:Bob@Biloxi.Example.COM SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKupper
Max-Forwards: 70
To: <SIP:Bob@Biloxi.Example.COM>
From: "Tel Caller" <tel:5551234;phone-context=+1-212>;tag=upper1
Call-ID: UPPER-scheme@atlanta.example.com
CSeq: 1 INVITE
P-Asserted-Identity: sip:pai-addrspec@atlanta.example.com
Contact: <SIP:alice@192.0.2.101>
Content-Length: 0

"""

M["68_empty_header_values"] = """OPTIONS sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKempty
Max-Forwards: 70
To: <sip:bob@biloxi.example.com>
From: <sip:alice@atlanta.example.com>;tag=empty1
Call-ID: empty-values@atlanta.example.com
CSeq: 1 OPTIONS
User-Agent:
Subject:
X-CID:
Mac:
Reason:
Content-Length: 0

"""

M["69_overlong_callid"] = """OPTIONS sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKlong
Max-Forwards: 70
To: <sip:bob@biloxi.example.com>
From: <sip:alice@atlanta.example.com>;tag=long1
Call-ID: """ + "x" * 140 + """@atlanta.example.com
CSeq: 1 OPTIONS
Content-Length: 0

"""

M["70_callid_aleg_and_rpid_reply"] = """SIP/2.0 183 Session Progress
Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKbleg1
To: <sip:+4930123456@carrier.example.net>;tag=cr183
From: "SBC" <sip:+4930999@sbc.example.com>;tag=bleg1
Call-ID: b-leg-77f2@203.0.113.10
CSeq: 10 INVITE
X-CID: a-leg-3848276298220188511@atlanta.example.com
Remote-Party-ID: <sip:+4930123456@carrier.example.net>;party=called;screen=yes;privacy=off
P-Early-Media: sendrecv
Contact: <sip:+4930123456@198.51.100.50:5060;transport=udp>
Content-Length: 0

"""

M["71_folded_via_and_diversion"] = """INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKfv1,
 SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKfv0
Max-Forwards: 69
To: <sip:bob@biloxi.example.com>
From: <sip:alice@atlanta.example.com>;tag=fv1
Call-ID: folded-via@atlanta.example.com
CSeq: 1 INVITE
Diversion: <sip:2000@pbx.example.com>;
 reason=user-busy
Contact: <sip:alice@192.0.2.101>
Content-Length: 0

"""


def main():
    for old in glob.glob(os.path.join(HERE, "*.sip")):
        os.remove(old)
    for name, text in M.items():
        head, sep, body = text.partition("\n\n")
        assert sep, name
        body_crlf = body.replace("\n", "\r\n").encode()
        head = head.replace("{len}", str(len(body_crlf)))
        data = head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body_crlf
        with open(os.path.join(HERE, name + ".sip"), "wb") as f:
            f.write(data)
    print(f"wrote {len(M)} messages")


if __name__ == "__main__":
    main()
