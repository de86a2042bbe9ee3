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
    fn new(version: u8, extensions: Vec<String>) -> Self {
        ActiveContext {
            version,
            extensions,
            undefined: false,
            profile: String::new(),
        }
    }

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

/// The state of an `@context` being read, entry by entry.
struct ContextReader<'v> {
    doc: usize,
    /// The contexts in force so far (the enclosing ones for a nested `@context`).
    ctx: Option<ActiveContext>,
    /// False once an entry was rejected.
    ok: bool,
    /// The previous entry was a `#limitless` DTDL context, so a limit context may follow.
    after_limitless: bool,
    /// An extension or affiliate context was read after a DTDL context: no DTDL context
    /// may follow.
    affiliate_seen: bool,
    /// A DTDL context was read in this `@context`.
    dtdl_seen: bool,
    seen: Vec<&'v str>,
}

/// One `@context` entry: its text, where it is, and what follows it.
struct Entry<'v> {
    pointer: String,
    value: &'v Value,
    text: &'v str,
    base: &'v str,
    fragment: Option<&'v str>,
    is_last: bool,
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
        if specs.is_empty() {
            if parent.is_none() {
                self.at(doc, pointer).error(
                    "emptyContext",
                    "@context is empty; expected a DTDL context such as \"dtmi:dtdl:context;3\"",
                );
            }
            return parent.cloned();
        }
        let mut reader = ContextReader {
            doc,
            ctx: parent.cloned(),
            ok: true,
            after_limitless: false,
            affiliate_seen: false,
            dtdl_seen: false,
            seen: Vec::new(),
        };
        for (i, spec) in specs.iter().enumerate() {
            let entry_pointer = if value.is_array() {
                super::ptr(pointer, &i.to_string())
            } else {
                pointer.to_string()
            };
            let Some(entry) =
                self.context_entry(&mut reader, entry_pointer, spec, i + 1 == specs.len())
            else {
                continue;
            };
            if !self.read_context_entry(&mut reader, &entry) {
                return None;
            }
        }
        let has_dtdl = specs.iter().any(|s| {
            s.as_str()
                .and_then(|s| dtdl_context_version(s.split('#').next().unwrap_or(s)))
                .is_some_and(|v| v.is_ok())
        });
        if parent.is_none() && reader.ok && !has_dtdl {
            self.at(doc, pointer).value(value).error(
                "missingDtdlContext",
                "@context has no DTDL context; expected e.g. \"dtmi:dtdl:context;3\"",
            );
            return None;
        }
        if reader.ok { reader.ctx } else { None }
    }

    /// Checks the form of one entry (a DTMI string, not repeated); `None` when it is unusable.
    fn context_entry<'v>(
        &mut self,
        reader: &mut ContextReader<'v>,
        pointer: String,
        value: &'v Value,
        is_last: bool,
    ) -> Option<Entry<'v>> {
        let doc = reader.doc;
        let Some(text) = value.as_str() else {
            // A local context (term definitions) is only read last, where no DTDL version
            // allows it; elsewhere it interrupts the DTDL context or the affiliates.
            let code = match (value.is_object(), is_last, &reader.ctx) {
                (false, _, _) => "invalidContextSpecifier",
                (true, true, _) => "disallowedLocalContext",
                (true, false, None) => "missingDtdlContext",
                (true, false, Some(_)) => "localContextNotLast",
            };
            self.at(doc, &pointer).value(value).error(code, "@context entries must be context DTMI strings; local context definitions are not allowed");
            reader.ok = false;
            return None;
        };
        if reader.seen.contains(&text) {
            self.at(doc, &pointer).value(value).warning(
                "ktwin:dtdl:duplicateContext",
                format!("@context lists '{text}' more than once"),
            );
        }
        reader.seen.push(text);
        let (base, fragment) = match text.split_once('#') {
            Some((b, f)) => (b, Some(f)),
            None => (text, None),
        };
        if !base.starts_with("dtmi:") {
            self.at(doc, &pointer).value(value).error(
                "nonDtmiContextSpecifier",
                format!("@context specifier '{text}' is not a DTMI"),
            );
            reader.ok = false;
            return None;
        }
        Some(Entry {
            pointer,
            value,
            text,
            base,
            fragment,
            is_last,
        })
    }

    /// Applies one entry; false when the whole `@context` must be given up.
    fn read_context_entry(&mut self, reader: &mut ContextReader<'_>, entry: &Entry<'_>) -> bool {
        let was_after_limitless = std::mem::take(&mut reader.after_limitless);
        if let Some(version) = dtdl_context_version(entry.base) {
            if reader.affiliate_seen {
                let message = format!(
                    "DTDL context '{}' follows an extension context; the DTDL context comes first",
                    entry.text
                );
                self.context_error(reader, entry, "dtdlContextFollowsAffiliate", message);
                return true;
            }
            reader.dtdl_seen = true;
            self.dtdl_context_entry(reader, entry, version, was_after_limitless);
            return true;
        }
        let digest = digest();
        if let Some(limit) = digest.limit_contexts.get(entry.base) {
            self.limit_context_entry(reader, entry, limit, was_after_limitless);
            return true;
        }
        if was_after_limitless {
            self.context_error(
                reader,
                entry,
                "missingLimitContext",
                "'#limitless' must be followed by a limit context".into(),
            );
        }
        if entry.fragment.is_some() {
            let message = format!("@context specifier '{}' has a fragment", entry.text);
            self.context_error(reader, entry, "invalidContextFragment", message);
            return true;
        }
        if let Some(&implied) = digest
            .affiliate_contexts_implicit_dtdl_versions
            .get(entry.base)
        {
            // An affiliate context may stand in for the DTDL context it implies (and precede
            // the DTDL context).
            reader.affiliate_seen |= reader.dtdl_seen;
            match &mut reader.ctx {
                Some(c) => c.extensions.push(entry.base.to_string()),
                None => {
                    reader.ctx = Some(ActiveContext::new(implied, vec![entry.base.to_string()]))
                }
            }
            return true;
        }
        self.extension_context_entry(reader, entry)
    }

    fn context_error(
        &mut self,
        reader: &mut ContextReader<'_>,
        entry: &Entry<'_>,
        code: &str,
        message: String,
    ) {
        self.at(reader.doc, &entry.pointer)
            .value(entry.value)
            .error(code, message);
        reader.ok = false;
    }

    /// `dtmi:dtdl:context;N`, with an optional `#limitless`/`#limits` fragment in v4.
    fn dtdl_context_entry(
        &mut self,
        reader: &mut ContextReader<'_>,
        entry: &Entry<'_>,
        version: Result<u8, &'static str>,
        was_after_limitless: bool,
    ) {
        let v = match version {
            Ok(v) => v,
            Err(code) => {
                let message = format!(
                    "@context specifier '{}' does not name a DTDL version 2, 3 or 4",
                    entry.text
                );
                return self.context_error(reader, entry, code, message);
            }
        };
        if let Some(max) = self.opts.max_dtdl_version.filter(|max| v > *max) {
            let message = format!(
                "@context specifier '{}' is DTDL v{v}, above the highest version allowed here (v{max})",
                entry.text
            );
            return self.context_error(reader, entry, "disallowedContextVersion", message);
        }
        match entry.fragment {
            None => {}
            Some(_) if v < 4 => {
                let message = format!("DTDL v{v} contexts take no fragment");
                self.context_error(reader, entry, "disallowedContextFragment", message);
            }
            Some("limitless") => {
                reader.after_limitless = true;
                if entry.is_last {
                    let message = "'#limitless' must be followed by a limit context".into();
                    self.context_error(reader, entry, "missingLimitContext", message);
                }
            }
            Some("limits") if was_after_limitless => {}
            Some("limits") => {
                let message =
                    "'#limits' must immediately follow a '#limitless' DTDL context".into();
                self.context_error(reader, entry, "misplacedLimitContext", message);
            }
            Some(_) => {
                let message = "only '#limitless' or '#limits' fragments are allowed".into();
                self.context_error(reader, entry, "invalidContextFragment", message);
            }
        }
        // A later DTDL context (nested or repeated) sets the version.
        match &mut reader.ctx {
            Some(c) => {
                c.version = v;
                if entry.fragment != Some("limits") {
                    c.profile.clear();
                }
            }
            None => reader.ctx = Some(ActiveContext::new(v, Vec::new())),
        }
    }

    /// A limit context (`dtmi:dtdl:limits:aio;1`): only right after `#limitless`.
    fn limit_context_entry(
        &mut self,
        reader: &mut ContextReader<'_>,
        entry: &Entry<'_>,
        limit: &crate::digest::LimitContext,
        was_after_limitless: bool,
    ) {
        if !was_after_limitless {
            let message = format!(
                "limit context '{}' must immediately follow 'dtmi:dtdl:context;4#limitless'",
                entry.text
            );
            return self.context_error(reader, entry, "misplacedLimitContext", message);
        }
        let Some(c) = &mut reader.ctx else {
            return;
        };
        let wrong_version = c.version != limit.dtdl_version;
        c.profile = limit.spec.clone();
        if wrong_version {
            let message = format!(
                "limit context '{}' is for DTDL v{}",
                entry.text, limit.dtdl_version
            );
            self.context_error(reader, entry, "disallowedLimitContext", message);
        }
    }

    /// An extension context; false when no DTDL context precedes it.
    fn extension_context_entry(
        &mut self,
        reader: &mut ContextReader<'_>,
        entry: &Entry<'_>,
    ) -> bool {
        let text = entry.text;
        reader.affiliate_seen = true;
        if reader.ctx.is_none() {
            self.at(reader.doc, &entry.pointer).value(entry.value).error("missingDtdlContext", format!("@context must start with a DTDL context (e.g. \"dtmi:dtdl:context;3\"), found '{text}'"));
            return false;
        }
        // Affiliate contexts may carry a minor version (`dtmi:foo:bar;1.1`) from DTDL v3 on.
        let with_minor = entry.base.contains(';')
            && !is_versioned_dtmi(entry.base)
            && crate::engine::walk::is_dtmi_syntax(entry.base, 3);
        let version = reader.ctx.as_ref().map_or(2, |c| c.version);
        if with_minor && version < 3 {
            let message = format!(
                "@context specifier '{text}' has a minor version, which DTDL v{version} does not allow"
            );
            self.context_error(reader, entry, "invalidContextSpecifierForVersion", message);
            return true;
        }
        if !with_minor && !is_versioned_dtmi(entry.base) {
            let code = if crate::engine::walk::is_dtmi_syntax(entry.base, 3) {
                "missingContextVersion"
            } else {
                "invalidContextSpecifier"
            };
            let message = format!("@context specifier '{text}' is not a versioned DTMI");
            self.context_error(reader, entry, code, message);
            return true;
        }
        if digest().contexts.contains_key(entry.base) {
            if let Some(c) = &mut reader.ctx {
                c.extensions.push(entry.base.to_string());
            }
        } else if self.opts.allow_undefined_extensions {
            if let Some(c) = &mut reader.ctx {
                c.undefined = true;
            }
        } else {
            let message = format!(
                "@context specifier '{text}' is not a known DTDL extension (use --allow-undefined-extensions to tolerate it)"
            );
            self.context_error(reader, entry, "unresolvableContextSpecifier", message);
        }
        true
    }
}

fn is_versioned_dtmi(s: &str) -> bool {
    crate::engine::walk::is_dtmi_syntax(s, 2)
}
