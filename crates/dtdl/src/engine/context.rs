//! `@context` processing: DTDL version, extension contexts, limit profiles, term lookup.

use serde_json::Value;

use super::Parser;
use crate::digest::digest;

/// The contexts in force for an element.
#[derive(Debug, Clone)]
pub(crate) struct ActiveContext {
    pub version: u8,
    /// Known extension/affiliate contexts, in order of appearance.
    pub extensions: Vec<String>,
    /// An unknown context is in force (tolerated under AllowUndefinedExtensions).
    pub undefined: bool,
    /// Limit profile (`""` default, `aio_1`, `onvif_1`).
    pub profile: String,
}

impl ActiveContext {
    pub fn dtdl_context(&self) -> &'static str {
        match self.version {
            2 => "dtmi:dtdl:context;2",
            3 => "dtmi:dtdl:context;3",
            _ => "dtmi:dtdl:context;4",
        }
    }

    /// The IRI a term stands for in the active contexts (later contexts win).
    pub fn resolve_term(&self, term: &str) -> Option<&'static str> {
        let contexts = &digest().contexts;
        for ext in self.extensions.iter().rev() {
            if let Some(iri) = contexts.get(ext).and_then(|c| c.get(term)) {
                return Some(iri.as_str());
            }
        }
        contexts
            .get(self.dtdl_context())
            .and_then(|c| c.get(term))
            .map(String::as_str)
    }
}

fn dtdl_context_version(spec: &str) -> Option<Result<u8, &'static str>> {
    let rest = spec.strip_prefix("dtmi:dtdl:context")?;
    if rest.is_empty() {
        return Some(Err("missingContextVersion"));
    }
    let v = rest.strip_prefix(';')?;
    match v {
        "2" => Some(Ok(2)),
        "3" => Some(Ok(3)),
        "4" => Some(Ok(4)),
        _ => Some(Err("unrecognizedContextVersion")),
    }
}

impl Parser<'_> {
    /// Processes an `@context` value. `parent` is the enclosing context (None at top level).
    pub(crate) fn process_context(
        &mut self,
        doc: usize,
        pointer: &str,
        value: &Value,
        parent: Option<&ActiveContext>,
    ) -> Option<ActiveContext> {
        let specs: Vec<&Value> = match value {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        if specs.is_empty() && parent.is_some() {
            return parent.cloned();
        }
        if specs.is_empty() {
            self.error(
                doc,
                pointer,
                "emptyContext",
                None,
                "@context is empty; expected a DTDL context such as \"dtmi:dtdl:context;3\"".into(),
            );
            return None;
        }
        let mut ctx = parent.cloned();
        let mut ok = true;
        let mut after_limitless = false;
        let mut seen_specs: Vec<&str> = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let p = if matches!(value, Value::Array(_)) {
                super::ptr(pointer, &i.to_string())
            } else {
                pointer.to_string()
            };
            let Some(s) = spec.as_str() else {
                let code = if spec.is_object() {
                    "disallowedLocalContext"
                } else {
                    "invalidContextSpecifier"
                };
                self.error(doc, &p, code, Some(spec), "@context entries must be context DTMI strings; local context definitions are not allowed".into());
                ok = false;
                continue;
            };
            if seen_specs.contains(&s) {
                self.warning(
                    doc,
                    &p,
                    "ktwin:dtdl:duplicateContext",
                    Some(spec),
                    format!("@context lists '{s}' more than once"),
                );
            }
            seen_specs.push(s);
            let (base, fragment) = match s.split_once('#') {
                Some((b, f)) => (b, Some(f)),
                None => (s, None),
            };
            if !base.starts_with("dtmi:") {
                self.error(
                    doc,
                    &p,
                    "nonDtmiContextSpecifier",
                    Some(spec),
                    format!("@context specifier '{s}' is not a DTMI"),
                );
                ok = false;
                continue;
            }
            let was_after_limitless = std::mem::take(&mut after_limitless);
            if let Some(version) = dtdl_context_version(base) {
                match version {
                    Err(code) => {
                        self.error(
                            doc,
                            &p,
                            code,
                            Some(spec),
                            format!(
                                "@context specifier '{s}' does not name a DTDL version 2, 3 or 4"
                            ),
                        );
                        ok = false;
                    }
                    Ok(v) => {
                        match fragment {
                            None => {}
                            Some(_) if v < 4 => {
                                self.error(
                                    doc,
                                    &p,
                                    "disallowedContextFragment",
                                    Some(spec),
                                    format!("DTDL v{v} contexts take no fragment"),
                                );
                                ok = false;
                            }
                            Some("limitless") => {
                                after_limitless = true;
                                if i + 1 >= specs.len() {
                                    self.error(
                                        doc,
                                        &p,
                                        "missingLimitContext",
                                        Some(spec),
                                        "'#limitless' must be followed by a limit context".into(),
                                    );
                                    ok = false;
                                }
                            }
                            Some("limits") if was_after_limitless => {}
                            Some("limits") => {
                                self.error(
                                    doc,
                                    &p,
                                    "misplacedLimitContext",
                                    Some(spec),
                                    "'#limits' must immediately follow a '#limitless' DTDL context"
                                        .into(),
                                );
                                ok = false;
                            }
                            Some(_) => {
                                self.error(
                                    doc,
                                    &p,
                                    "invalidContextFragment",
                                    Some(spec),
                                    "only '#limitless' or '#limits' fragments are allowed".into(),
                                );
                                ok = false;
                            }
                        }
                        // A later DTDL context (nested or repeated) sets the version.
                        match &mut ctx {
                            Some(c) => {
                                c.version = v;
                                if fragment != Some("limits") {
                                    c.profile.clear();
                                }
                            }
                            None => {
                                ctx = Some(ActiveContext {
                                    version: v,
                                    extensions: Vec::new(),
                                    undefined: false,
                                    profile: String::new(),
                                });
                            }
                        }
                    }
                }
                continue;
            }
            let digest = digest();
            if let Some(limit) = digest.limit_contexts.get(base) {
                if !was_after_limitless {
                    self.error(doc, &p, "misplacedLimitContext", Some(spec), format!("limit context '{s}' must immediately follow 'dtmi:dtdl:context;4#limitless'"));
                    ok = false;
                } else if let Some(c) = &mut ctx {
                    if c.version != limit.dtdl_version {
                        self.error(
                            doc,
                            &p,
                            "disallowedLimitContext",
                            Some(spec),
                            format!("limit context '{s}' is for DTDL v{}", limit.dtdl_version),
                        );
                        ok = false;
                    }
                    c.profile = limit.spec.clone();
                }
                continue;
            }
            if was_after_limitless {
                self.error(
                    doc,
                    &p,
                    "missingLimitContext",
                    Some(spec),
                    "'#limitless' must be followed by a limit context".into(),
                );
                ok = false;
            }
            if fragment.is_some() {
                self.error(
                    doc,
                    &p,
                    "invalidContextFragment",
                    Some(spec),
                    format!("@context specifier '{s}' has a fragment"),
                );
                ok = false;
                continue;
            }
            if let Some(&implied) = digest.affiliate_contexts_implicit_dtdl_versions.get(base) {
                // An affiliate context must be accompanied by a DTDL context (checked below).
                match &mut ctx {
                    Some(c) => c.extensions.push(base.to_string()),
                    None => {
                        ctx = Some(ActiveContext {
                            version: implied,
                            extensions: vec![base.to_string()],
                            undefined: false,
                            profile: String::new(),
                        })
                    }
                }
                continue;
            }
            if ctx.is_none() {
                self.error(doc, &p, "missingDtdlContext", Some(spec), format!("@context must start with a DTDL context (e.g. \"dtmi:dtdl:context;3\"), found '{s}'"));
                return None;
            }
            if !is_versioned_dtmi(base) {
                let code = if crate::engine::walk::is_dtmi_syntax(base, 3) {
                    "missingContextVersion"
                } else {
                    "invalidContextSpecifier"
                };
                self.error(
                    doc,
                    &p,
                    code,
                    Some(spec),
                    format!("@context specifier '{s}' is not a versioned DTMI"),
                );
                ok = false;
                continue;
            }
            let c = ctx.as_mut()?;
            if digest.contexts.contains_key(base) {
                c.extensions.push(base.to_string());
            } else if self.opts.allow_undefined_extensions {
                c.undefined = true;
            } else {
                self.error(doc, &p, "unresolvableContextSpecifier", Some(spec), format!("@context specifier '{s}' is not a known DTDL extension (use --allow-undefined-extensions to tolerate it)"));
                ok = false;
            }
        }
        let has_dtdl = specs.iter().any(|s| {
            s.as_str()
                .and_then(|s| dtdl_context_version(s.split('#').next().unwrap_or(s)))
                .is_some_and(|v| v.is_ok())
        });
        if parent.is_none() && ok && !has_dtdl {
            self.error(
                doc,
                pointer,
                "missingDtdlContext",
                Some(value),
                "@context has no DTDL context; expected e.g. \"dtmi:dtdl:context;3\"".into(),
            );
            return None;
        }
        if ok { ctx } else { None }
    }
}

fn is_versioned_dtmi(s: &str) -> bool {
    crate::engine::walk::is_dtmi_syntax(s, 2)
}
