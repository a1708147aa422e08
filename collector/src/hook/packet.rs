//! The packet object handed to the callback (`hep`): every HEP field by name (`hep.src_ip`)
//! and by chunk id (`hep:chunk(0x000f)`), with the values and types of Kamailio's `$hep(...)`.
//! It reads the current call's packet from the call context.

use mlua::{Lua, MetaMethod, UserData, UserDataMethods, Value};
use sipcapture_proto::v1::InputKind;

use super::api::arg_text;
use super::context::{CallContext, Ctx};
use crate::decode::hep::{self, HepPacket, HepPayload};

/// The packet object handed to the callback; reads the current call's packet.
pub(super) struct PacketObject(pub(super) Ctx);

/// `$hep(...)` values for one chunk id (behaviour doc §1.4): integers for 1, 2, 11 (u8), 7, 8,
/// 13 (u16), 9, 10, 12 (u32); dotted or colon address text for 3–6; bytes for 14, 15, 17; -1
/// for any other id; nil when the packet has no such chunk. v1/v2 packets answer from their
/// fixed header (Kamailio answers only for HEP3).
fn chunk_value(lua: &Lua, p: &HepPacket<'_>, id: u16) -> mlua::Result<Value> {
    use hep::v3::chunk_type as ct;
    let int = |v: Option<u32>| Value::Integer(v.map_or(0, i64::from));
    let value = match id {
        ct::IP_FAMILY => p.ip_family.map(|v| int(Some(u32::from(v)))),
        ct::IP_PROTOCOL => p.ip_protocol.map(|v| int(Some(u32::from(v)))),
        ct::PROTO_TYPE => p.proto_type.map(|v| int(Some(u32::from(v)))),
        ct::SRC_PORT => p.src_port.map(|v| int(Some(u32::from(v)))),
        ct::DST_PORT => p.dst_port.map(|v| int(Some(u32::from(v)))),
        ct::KEEP_ALIVE => p.keep_alive.map(|v| int(Some(u32::from(v)))),
        ct::TS_SEC => p.ts_sec.map(|v| int(Some(v))),
        ct::TS_USEC => p.ts_usec.map(|v| int(Some(v))),
        ct::CAPTURE_ID => p.capture_id.map(|v| int(Some(v))),
        ct::IPV4_SRC | ct::IPV6_SRC => p
            .src_ip
            .filter(|ip| ip.is_ipv4() == (id == ct::IPV4_SRC))
            .map(|ip| lua.create_string(ip.to_string()).map(Value::String))
            .transpose()?,
        ct::IPV4_DST | ct::IPV6_DST => p
            .dst_ip
            .filter(|ip| ip.is_ipv4() == (id == ct::IPV4_DST))
            .map(|ip| lua.create_string(ip.to_string()).map(Value::String))
            .transpose()?,
        ct::AUTH_KEY => p
            .auth_key
            .map(|b| lua.create_string(b).map(Value::String))
            .transpose()?,
        ct::PAYLOAD => match p.payload {
            Some(HepPayload::Raw(b)) => Some(Value::String(lua.create_string(b)?)),
            _ => None,
        },
        ct::CORRELATION_ID => p
            .correlation_id
            .map(|b| lua.create_string(b).map(Value::String))
            .transpose()?,
        _ => Some(Value::Integer(-1)),
    };
    Ok(value.unwrap_or(Value::Nil))
}

/// Parses a chunk name like `$hep(...)` takes it (`0x00f`, `0x000f`, `15`, `version`) or a
/// number.
fn chunk_id(value: &Value) -> Option<u32> {
    match value {
        Value::Integer(i) => u32::try_from(*i).ok(),
        Value::Number(n) if n.fract() == 0.0 && *n >= 0.0 => Some(*n as u32),
        Value::String(s) => {
            let s = s.to_str().ok()?.trim().to_ascii_lowercase();
            if s == "version" {
                return Some(0);
            }
            match s.strip_prefix("0x") {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => s.parse().ok(),
            }
        }
        _ => None,
    }
}

/// The request method or reply code of a SIP payload's start line (empty when not SIP).
fn start_line_method(payload: &[u8]) -> &[u8] {
    let line_end = memchr::memchr(b'\r', payload).unwrap_or(payload.len().min(256));
    let line = payload.get(..line_end).unwrap_or_default();
    if let Some(rest) = line.strip_prefix(b"SIP/2.0 ") {
        return rest.get(..3).unwrap_or_default();
    }
    if !line.ends_with(b" SIP/2.0") {
        return b"";
    }
    let end = memchr::memchr(b' ', line).unwrap_or(0);
    line.get(..end).unwrap_or_default()
}

fn field_value(lua: &Lua, ctx: &CallContext, name: &str) -> mlua::Result<Value> {
    use hep::v3::chunk_type as ct;
    let text = |s: String| lua.create_string(s).map(Value::String);
    match name {
        "raw" => return lua.create_string(&ctx.raw).map(Value::String),
        "length" => return Ok(Value::Integer(i64::try_from(ctx.raw.len()).unwrap_or(0))),
        "peer_ip" => {
            return ctx
                .peer
                .map_or(Ok(Value::Nil), |p| text(p.ip().to_string()));
        }
        "peer_port" => {
            return Ok(ctx
                .peer
                .map_or(Value::Nil, |p| Value::Integer(i64::from(p.port()))));
        }
        "transport" => {
            let t = match ctx.input {
                Some(InputKind::HepTcp) => "tcp",
                Some(InputKind::HepTls) => "tls",
                _ => "udp",
            };
            return text(t.to_owned());
        }
        _ => {}
    }
    let Ok(p) = hep::decode(&ctx.raw) else {
        return Ok(Value::Integer(-1));
    };
    let by_chunk = |id: u16| chunk_value(lua, &p, id);
    match name {
        "version" => Ok(Value::Integer(i64::from(p.version))),
        "ip_family" | "family" => by_chunk(ct::IP_FAMILY),
        "ip_protocol" | "protocol" => by_chunk(ct::IP_PROTOCOL),
        "src_ip" => p.src_ip.map_or(Ok(Value::Nil), |ip| text(ip.to_string())),
        "dst_ip" => p.dst_ip.map_or(Ok(Value::Nil), |ip| text(ip.to_string())),
        "src_port" => by_chunk(ct::SRC_PORT),
        "dst_port" => by_chunk(ct::DST_PORT),
        "ts_sec" | "time_sec" => by_chunk(ct::TS_SEC),
        "ts_usec" | "time_usec" => by_chunk(ct::TS_USEC),
        "payload_type" | "proto_type" => by_chunk(ct::PROTO_TYPE),
        "capture_id" => by_chunk(ct::CAPTURE_ID),
        "keep_alive" => by_chunk(ct::KEEP_ALIVE),
        "auth_key" => by_chunk(ct::AUTH_KEY),
        "correlation_id" => by_chunk(ct::CORRELATION_ID),
        "vlan_id" => Ok(p
            .vlan_id
            .map_or(Value::Nil, |v| Value::Integer(i64::from(v)))),
        "node_name" => p
            .node_name
            .map_or(Ok(Value::Nil), |b| lua.create_string(b).map(Value::String)),
        "payload" => match p.payload {
            None => Ok(Value::Nil),
            Some(payload) => match payload.inflate(1024 * 1024) {
                Ok(bytes) => lua.create_string(&*bytes).map(Value::String),
                Err(_) => Ok(Value::Nil),
            },
        },
        "compressed" => Ok(Value::Boolean(matches!(
            p.payload,
            Some(HepPayload::Compressed(_))
        ))),
        "method" => match p.payload {
            Some(HepPayload::Raw(b)) => lua.create_string(start_line_method(b)).map(Value::String),
            _ => text(String::new()),
        },
        _ => Ok(Value::Nil),
    }
}

impl UserData for PacketObject {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // hep:chunk(id): Kamailio's $hep(id).
        methods.add_method("chunk", |lua, this, id: Value| {
            let ctx = this.0.lock();
            match chunk_id(&id) {
                Some(0) => Ok(Value::Integer(
                    hep::decode(&ctx.raw).map_or(-1, |p| i64::from(p.version)),
                )),
                Some(id) => {
                    let Ok(p) = hep::decode(&ctx.raw) else {
                        return Ok(Value::Integer(-1));
                    };
                    match u16::try_from(id) {
                        Ok(id) => chunk_value(lua, &p, id),
                        Err(_) => Ok(Value::Integer(-1)),
                    }
                }
                None => Err(mlua::Error::RuntimeError(format!(
                    "hep:chunk: unknown hep name {}",
                    arg_text(&id)
                ))),
            }
        });
        methods.add_meta_method(MetaMethod::Index, |lua, this, key: mlua::LuaString| {
            // Borrowed: no Rust allocation per field read.
            let key = key.to_str()?;
            let mut ctx = this.0.lock();
            if let Some((_, v)) = ctx.memo.iter().find(|(k, _)| k.as_str() == &*key) {
                return Ok(v.clone());
            }
            let value = field_value(lua, &ctx, &key)?;
            ctx.memo.push((key.to_string(), value.clone()));
            Ok(value)
        });
    }
}
