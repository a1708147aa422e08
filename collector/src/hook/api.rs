//! The functions offered to the script: `sip_capture(table, mode)`,
//! `report_capture(table, cid, data)`, `sip_capture_forward(uri)`, `float2int(fval, ival)` and
//! `log(level, msg)`, with Kamailio's argument conventions.

use mlua::{Lua, Value};

use super::context::{Ctx, ReportRequest, Services};

/// Lua value → bytes (strings as they are, numbers in their Lua text form, nil → empty).
fn arg_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Integer(i) => i.to_string().into_bytes(),
        Value::Number(n) => n.to_string().into_bytes(),
        Value::Boolean(b) => b.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

pub(super) fn arg_text(value: &Value) -> String {
    String::from_utf8_lossy(&arg_bytes(value)).into_owned()
}

pub(super) fn install_api(lua: &Lua, ctx: &Ctx) -> mlua::Result<()> {
    let globals = lua.globals();

    // sip_capture([table], [mode]): store this packet, with Kamailio's table / capture-mode hints.
    let call = ctx.clone();
    let sip_capture = lua.create_function(move |_, (table, mode): (Value, Value)| {
        let table = arg_text(&table);
        let mode = arg_text(&mode);
        if !table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'%')
        {
            tracing::warn!(
                table,
                "sip_capture: table name must be [A-Za-z0-9_] with strftime %-sequences"
            );
            return Ok(-1);
        }
        call.lock().capture = Some((table, mode));
        Ok(1)
    })?;
    globals.set("sip_capture", sip_capture)?;

    // report_capture(table, [cid], [data]).
    let call = ctx.clone();
    let report_capture =
        lua.create_function(move |_, (table, cid, data): (Value, Value, Value)| {
            let table = arg_text(&table);
            if table.is_empty()
                || !table
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                tracing::warn!(table, "report_capture: table name must be [A-Za-z0-9_]");
                return Ok(-1);
            }
            let mut data = arg_bytes(&data);
            // Kamailio's workaround: a data argument exactly "report_capture" counts as empty.
            if data == b"report_capture" {
                data.clear();
            }
            call.lock().reports.push(ReportRequest {
                table,
                cid: arg_bytes(&cid),
                data,
            });
            Ok(1)
        })?;
    globals.set("report_capture", report_capture)?;

    // sip_capture_forward(uri): the raw packet to another HEP collector.
    let call = ctx.clone();
    let forward = lua.create_function(move |lua, uri: String| {
        let services = lua.app_data_ref::<Services>().map(|s| s.clone());
        let Some(forwarder) = services.as_ref().and_then(|s| s.forwarder.clone()) else {
            return Ok(-1);
        };
        let raw = call.lock().raw.clone();
        match forwarder.forward_raw(&uri, &raw) {
            Ok(()) => Ok(1),
            Err(e) => {
                tracing::warn!(uri, error = %e, "sip_capture_forward failed");
                Ok(-1)
            }
        }
    })?;
    globals.set("sip_capture_forward", forward)?;

    // float2int(fval, ival): (int)(atof(fval) * atoi(ival)), -1 when that is 0.
    let float2int = lua
        .create_function(|_, (f, i): (Value, Value)| Ok(float2int(&arg_text(&f), &arg_text(&i))))?;
    globals.set("float2int", float2int)?;

    // log(level, msg) / log(msg).
    let log = lua.create_function(|_, (a, b): (Value, Value)| {
        let (level, msg) = match b {
            Value::Nil => ("info".to_owned(), arg_text(&a)),
            _ => (arg_text(&a).to_ascii_lowercase(), arg_text(&b)),
        };
        match level.as_str() {
            "err" | "error" | "crit" | "alert" | "1" => tracing::error!(target: "lua", "{msg}"),
            "warn" | "warning" | "2" => tracing::warn!(target: "lua", "{msg}"),
            "dbg" | "debug" | "4" => tracing::debug!(target: "lua", "{msg}"),
            _ => tracing::info!(target: "lua", "{msg}"),
        }
        Ok(())
    })?;
    globals.set("log", log)?;
    Ok(())
}

/// Kamailio `float2int(fval, ival)`: C `atof` and `atoi` (leading number, else 0), product cut
/// toward zero to an int; -1 when the result is 0.
pub fn float2int(fval: &str, ival: &str) -> i64 {
    let product = c_atof(fval) * c_atoi(ival) as f64;
    // C's (int) conversion: truncation toward zero, saturating here instead of UB.
    let result = if product.is_finite() {
        product.trunc().clamp(i32::MIN as f64, i32::MAX as f64) as i64
    } else {
        0
    };
    if result == 0 { -1 } else { result }
}

fn c_atoi(s: &str) -> i64 {
    let t = s.trim_start();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, t.get(1..).unwrap_or_default()),
        Some(b'+') => (false, t.get(1..).unwrap_or_default()),
        _ => (false, t),
    };
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    let value = digits
        .get(..end)
        .unwrap_or_default()
        .parse::<i64>()
        .unwrap_or(0)
        .clamp(i64::from(i32::MIN), i64::from(i32::MAX));
    if neg { -value } else { value }
}

fn c_atof(s: &str) -> f64 {
    let t = s.trim_start();
    // The longest prefix that parses as a decimal float (C strtod without hex/inf/nan).
    let bytes = t.as_bytes();
    let mut end = 0;
    let mut best = 0.0;
    while end < bytes.len() {
        end += 1;
        if let Some(prefix) = t.get(..end)
            && let Ok(v) = prefix.parse::<f64>()
            && !prefix.ends_with(['i', 'n', 'I', 'N', 'f', 'F', 'a', 'A', 'y', 'Y', 't', 'T'])
        {
            best = v;
        }
        if end > 64 {
            break;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float2int_is_kamailios() {
        assert_eq!(float2int("10.5", "1"), 10);
        assert_eq!(float2int("4.1", "100"), 409);
        assert_eq!(float2int("0.001", "10"), -1);
        assert_eq!(float2int("abc", "3"), -1);
        assert_eq!(float2int(" -2.5x", "2"), -5);
        assert_eq!(float2int("1e2", "3"), 300);
        assert_eq!(float2int("3.9", "1zz"), 3);
    }
}
