//! Conditions as [`MatchConfig`] values: conjunction, a same-field disjunction, and the
//! clean-up of the rules a walk found (rules earlier ones already decide are dropped,
//! neighbours with the same action merged).

use sipcapture_storer::config::{MatchConfig, RouteRuleConfig};

/// Every reply status.
pub const ANY_REPLY: &str = "100-699";

/// A rule found on a path and the source line that decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundRule {
    /// The rule.
    pub rule: RouteRuleConfig,
    /// Lines that decided it (`sip_capture`, `drop`, end of route).
    pub lines: Vec<usize>,
    /// What decided it, for the comment.
    pub what: String,
}

fn intersect<T: PartialEq + Clone>(a: &[T], b: &[T]) -> Option<Vec<T>> {
    if a.is_empty() {
        return Some(b.to_vec());
    }
    if b.is_empty() {
        return Some(a.to_vec());
    }
    let both: Vec<T> = a.iter().filter(|x| b.contains(x)).cloned().collect();
    (!both.is_empty()).then_some(both)
}

/// Both conditions; `None` when they cannot hold together.
pub fn and(a: &MatchConfig, b: &MatchConfig) -> Option<MatchConfig> {
    let reply_code = if a.reply_code == [ANY_REPLY] && !b.reply_code.is_empty() {
        b.reply_code.clone()
    } else {
        intersect(&a.reply_code, &b.reply_code)?
    };
    let mut header = a.header.clone();
    for h in &b.header {
        if !header.contains(h) {
            header.push(h.clone());
        }
    }
    Some(MatchConfig {
        method: intersect(&a.method, &b.method)?,
        cseq_method: intersect(&a.cseq_method, &b.cseq_method)?,
        reply_code,
        payload_type: intersect(&a.payload_type, &b.payload_type)?,
        src_ip: intersect(&a.src_ip, &b.src_ip)?,
        dst_ip: intersect(&a.dst_ip, &b.dst_ip)?,
        src_port: intersect(&a.src_port, &b.src_port)?,
        dst_port: intersect(&a.dst_port, &b.dst_port)?,
        node: intersect(&a.node, &b.node)?,
        header,
    })
}

/// `a || b` when both constrain the same one list field.
pub fn or_same_field(a: &MatchConfig, b: &MatchConfig) -> Option<MatchConfig> {
    let union = |x: &[String], y: &[String]| {
        let mut u = x.to_vec();
        u.extend(y.iter().filter(|v| !x.contains(v)).cloned());
        u
    };
    let only = |m: &MatchConfig| -> Option<u8> {
        let set = [
            !m.method.is_empty(),
            !m.cseq_method.is_empty(),
            !m.reply_code.is_empty(),
        ];
        let others = m.payload_type.is_empty()
            && m.src_ip.is_empty()
            && m.dst_ip.is_empty()
            && m.src_port.is_empty()
            && m.dst_port.is_empty()
            && m.node.is_empty()
            && m.header.is_empty();
        (others && set.iter().filter(|s| **s).count() == 1)
            .then(|| {
                set.iter()
                    .position(|s| *s)
                    .and_then(|p| u8::try_from(p).ok())
            })
            .flatten()
    };
    let field = only(a)?;
    (only(b)? == field).then(|| {
        let mut m = a.clone();
        match field {
            0 => m.method = union(&a.method, &b.method),
            1 => m.cseq_method = union(&a.cseq_method, &b.cseq_method),
            _ => m.reply_code = union(&a.reply_code, &b.reply_code),
        }
        m
    })
}

fn subset<T: PartialEq>(small: &[T], big: &[T]) -> bool {
    big.is_empty() || (!small.is_empty() && small.iter().all(|x| big.contains(x)))
}

/// Whether every record `r` matches also matches `e` (so `r` after `e` never decides them).
fn subsumes(e: &MatchConfig, r: &MatchConfig) -> bool {
    subset(&r.method, &e.method)
        && subset(&r.cseq_method, &e.cseq_method)
        && subset(&r.reply_code, &e.reply_code)
        && subset(&r.payload_type, &e.payload_type)
        && subset(&r.src_ip, &e.src_ip)
        && subset(&r.dst_ip, &e.dst_ip)
        && subset(&r.src_port, &e.src_port)
        && subset(&r.dst_port, &e.dst_port)
        && subset(&r.node, &e.node)
        && e.header.iter().all(|h| r.header.contains(h))
}

/// Removes rules (and method names of rules) that earlier rules already decide, then merges
/// neighbours with the same action that differ only in their method list.
pub fn simplify(rules: Vec<FoundRule>) -> Vec<FoundRule> {
    let mut kept: Vec<FoundRule> = Vec::new();
    for mut r in rules {
        let mut dead = false;
        let decided =
            |m: &MatchConfig, kept: &[FoundRule]| kept.iter().any(|e| subsumes(&e.rule.matches, m));
        for field in [0, 1] {
            let list = if field == 0 {
                &r.rule.matches.method
            } else {
                &r.rule.matches.cseq_method
            };
            if list.len() < 2 {
                continue;
            }
            let open: Vec<String> = list
                .iter()
                .filter(|v| {
                    let mut one = r.rule.matches.clone();
                    if field == 0 {
                        one.method = vec![(*v).clone()];
                    } else {
                        one.cseq_method = vec![(*v).clone()];
                    }
                    !decided(&one, &kept)
                })
                .cloned()
                .collect();
            if open.is_empty() {
                dead = true;
            } else {
                if field == 0 {
                    r.rule.matches.method = open;
                } else {
                    r.rule.matches.cseq_method = open;
                }
            }
        }
        if dead || decided(&r.rule.matches, &kept) {
            continue;
        }
        // Merge with an earlier rule of the same action when every rule in between is
        // disjoint from this one (moving it up then changes no decision).
        let mut target = None;
        for (k, e) in kept.iter().enumerate().rev() {
            if merge(&e.rule, &r.rule).is_some() {
                target = Some(k);
                break;
            }
            if !disjoint(&e.rule.matches, &r.rule.matches) {
                break;
            }
        }
        if let Some(k) = target
            && let Some(merged) = merge(&kept[k].rule, &r.rule)
        {
            kept[k].rule = merged;
            for l in r.lines {
                if !kept[k].lines.contains(&l) {
                    kept[k].lines.push(l);
                }
            }
            continue;
        }
        kept.push(r);
    }
    kept
}

/// No record can match both (some exact-valued field has no value in common).
fn disjoint(a: &MatchConfig, b: &MatchConfig) -> bool {
    fn apart<T: PartialEq>(x: &[T], y: &[T]) -> bool {
        !x.is_empty() && !y.is_empty() && !x.iter().any(|v| y.contains(v))
    }
    apart(&a.method, &b.method)
        || apart(&a.cseq_method, &b.cseq_method)
        || apart(&a.payload_type, &b.payload_type)
        || apart(&a.src_port, &b.src_port)
        || apart(&a.dst_port, &b.dst_port)
        || apart(&a.node, &b.node)
}

fn merge(a: &RouteRuleConfig, b: &RouteRuleConfig) -> Option<RouteRuleConfig> {
    if a.table != b.table || a.capture_mode != b.capture_mode || a.drop != b.drop {
        return None;
    }
    let (ma, mb) = (&a.matches, &b.matches);
    let mut m = ma.clone();
    let same_rest = |x: &MatchConfig, y: &MatchConfig| {
        let mut x = x.clone();
        let mut y = y.clone();
        x.method.clear();
        y.method.clear();
        x == y
    };
    if ma == mb {
        return Some(a.clone());
    }
    if !ma.method.is_empty() && !mb.method.is_empty() && same_rest(ma, mb) {
        m.method
            .extend(mb.method.iter().filter(|v| !ma.method.contains(v)).cloned());
        return Some(RouteRuleConfig {
            matches: m,
            ..a.clone()
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcapture_storer::config::HeaderMatchConfig;

    fn rule(method: &str, table: Option<&str>, ua: bool) -> FoundRule {
        FoundRule {
            rule: RouteRuleConfig {
                matches: MatchConfig {
                    method: vec![method.to_owned()],
                    header: if ua {
                        vec![HeaderMatchConfig {
                            name: "user_agent".into(),
                            prefix: Some("x".into()),
                            ..Default::default()
                        }]
                    } else {
                        Vec::new()
                    },
                    ..Default::default()
                },
                table: table.map(str::to_owned),
                drop: table.is_none(),
                ..Default::default()
            },
            lines: vec![1],
            what: String::new(),
        }
    }

    #[test]
    fn merges_across_disjoint_rules_only() {
        let merged = simplify(vec![
            rule("INVITE", Some("call"), false),
            rule("OPTIONS", None, false),
            rule("BYE", Some("call"), false),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].rule.matches.method, ["INVITE", "BYE"]);
        // A scanner drop on BYE sits between: the later BYE rule must stay after it.
        let kept = simplify(vec![
            rule("INVITE", Some("call"), false),
            rule("BYE", None, true),
            rule("BYE", Some("call"), false),
        ]);
        assert_eq!(kept.len(), 3);
        // A rule an earlier one fully decides is left out.
        let dead = simplify(vec![
            rule("BYE", Some("call"), false),
            rule("BYE", Some("rest"), false),
        ]);
        assert_eq!(dead.len(), 1);
    }
}
