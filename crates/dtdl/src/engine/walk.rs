//! Stage 1: documents → typed elements, each checked against its class rules.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::context::ActiveContext;
use super::pattern::{is_language_code, is_lenient_id, matches};
use super::{ElemId, Element, Parser, PropValue, RefSite, ptr};
use crate::digest::{PropertyCommon, PropertyRules, SupplementalType, digest, limit_for};

/// True when `s` is a syntactically valid DTMI reference in DTDL `version`.
pub(crate) fn is_dtmi_syntax(s: &str, version: u8) -> bool {
    digest()
        .identifier_reference
        .get(&version.to_string())
        .is_some_and(|rule| matches(&rule.pattern, s))
}

/// The supplemental type and its ancestors (nearest first).
pub(crate) fn supplemental_chain(iri: &str) -> Vec<(&'static str, &'static SupplementalType)> {
    let types = &digest().supplemental_types;
    let mut chain = Vec::new();
    let mut cur = types.get_key_value(iri);
    while let Some((k, t)) = cur {
        chain.push((k.as_str(), t));
        cur = t.parent.as_deref().and_then(|p| types.get_key_value(p));
        if chain.len() > 16 {
            break;
        }
    }
    chain
}

/// The material class name of a `dtmi:dtdl:class:<Name>;<v>` IRI.
fn class_of_iri(iri: &str, version: u8) -> Option<&'static str> {
    let rest = iri.strip_prefix("dtmi:dtdl:class:")?;
    let (name, v) = rest.split_once(';')?;
    if v != version.to_string() {
        return None;
    }
    let (k, class) = digest().material_classes.get_key_value(name)?;
    class.dtdl_versions.contains(&version).then_some(k.as_str())
}

const LITERAL_TYPES: &[&str] = &[
    "string", "integer", "duration", "decimal", "IRI", "boolean", "double", "long",
];

enum Outcome {
    Valid,
    Tenable,
    Invalid,
}

/// Context passed from a parent element to the child it defines inline.
pub(crate) struct ChildLink<'p> {
    pub parent: ElemId,
    pub prop: &'p str,
    pub segment: String,
    pub id_required: bool,
}

impl Parser<'_> {
    fn apocrypha(&self, version: u8, case: &str) -> Outcome {
        match digest().apocrypha(version, case) {
            "valid" => Outcome::Valid,
            "tenable" => Outcome::Tenable,
            _ => Outcome::Invalid,
        }
    }

    /// Walks one top-level JSON document (an object or an array of objects).
    pub(crate) fn walk_document(&mut self, doc: usize, value: &Value) {
        match value {
            Value::Object(obj) => self.walk_top(doc, obj, ""),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = format!("/{i}");
                    match item {
                        Value::Object(obj) => self.walk_top(doc, obj, &p),
                        other => self.error(
                            doc,
                            &p,
                            "notJsonObject",
                            Some(other),
                            "expected a JSON object (a DTDL Interface)".into(),
                        ),
                    }
                }
            }
            other => self.error(
                doc,
                "",
                "notJsonObject",
                Some(other),
                "document must be a JSON object or an array of JSON objects".into(),
            ),
        }
    }

    fn walk_top(&mut self, doc: usize, obj: &Map<String, Value>, pointer: &str) {
        let Some(ctx_value) = obj.get("@context") else {
            self.error(doc, pointer, "missingContext", None, "top-level element has no @context; expected e.g. \"@context\": \"dtmi:dtdl:context;3\"".into());
            return;
        };
        let Some(ctx) = self.process_context(doc, &ptr(pointer, "@context"), ctx_value, None)
        else {
            return;
        };
        if obj.contains_key("@graph") {
            self.error(
                doc,
                &ptr(pointer, "@graph"),
                "topLevelGraphDisallowed",
                None,
                "'@graph' is not allowed".into(),
            );
            return;
        }
        if let Some(partition) = digest().partitions.get(&ctx.version.to_string())
            && let Some(max) = partition
                .max_bytes
                .as_ref()
                .and_then(|m| limit_for(m, &ctx.profile))
        {
            let size = serde_json::to_string(obj).map(|s| s.len()).unwrap_or(0) as i64;
            if size > max {
                self.error(
                    doc,
                    pointer,
                    "partitionTooLarge",
                    None,
                    format!("element JSON is {size} bytes, the limit is {max}"),
                );
            }
        }
        let allowed = if self.standard_mode {
            "Entity"
        } else {
            "Interface"
        };
        if let Some(root) = self.walk_element(doc, obj, pointer, &ctx, allowed, None) {
            self.roots.push(root);
        }
    }

    /// Walks one element; returns its arena index.
    pub(crate) fn walk_element(
        &mut self,
        doc: usize,
        obj: &Map<String, Value>,
        pointer: &str,
        outer: &ActiveContext,
        allowed: &str,
        link: Option<ChildLink<'_>>,
    ) -> Option<ElemId> {
        let digest = digest();
        let nested_ctx;
        let ctx = match (link.is_some(), obj.get("@context")) {
            (true, Some(v)) => {
                nested_ctx =
                    self.process_context(doc, &ptr(pointer, "@context"), v, Some(outer))?;
                &nested_ctx
            }
            _ => outer,
        };
        let version = ctx.version;

        // @type → one material class plus supplemental types.
        let mut material: Vec<&'static str> = Vec::new();
        let mut cotypes: Vec<String> = Vec::new();
        let mut undefined_cotype = false;
        let mut ok = true;
        let type_values: Vec<&Value> = match obj.get("@type") {
            Some(Value::Array(a)) => a.iter().collect(),
            Some(v) => vec![v],
            None => Vec::new(),
        };
        if matches!(obj.get("@type"), Some(Value::Array(a)) if a.is_empty()) {
            self.error(
                doc,
                &ptr(pointer, "@type"),
                "ktwin:dtdl:emptyType",
                None,
                "@type is empty".into(),
            );
            return None;
        }
        for t in &type_values {
            let Some(term) = t.as_str().filter(|s| !s.is_empty()) else {
                self.error(
                    doc,
                    &ptr(pointer, "@type"),
                    "ktwin:dtdl:typeNotString",
                    Some(t),
                    "@type values must be non-empty strings".into(),
                );
                ok = false;
                continue;
            };
            let iri = ctx.resolve_term(term).map(str::to_string).or_else(|| {
                (term.starts_with("dtmi:") && is_dtmi_syntax(term, 3)).then(|| term.to_string())
            });
            self.recommend_term(doc, &ptr(pointer, "@type"), term, iri.as_deref(), ctx);
            let (case, code) = match iri {
                Some(iri) => {
                    if let Some(class) = class_of_iri(&iri, version) {
                        if material.contains(&class) {
                            self.warning(
                                doc,
                                &ptr(pointer, "@type"),
                                "ktwin:dtdl:duplicateType",
                                Some(t),
                                format!("@type lists {class} more than once"),
                            );
                        } else {
                            material.push(class);
                        }
                        continue;
                    }
                    if digest.supplemental_types.contains_key(&iri) {
                        if cotypes.contains(&iri) {
                            self.warning(
                                doc,
                                &ptr(pointer, "@type"),
                                "ktwin:dtdl:duplicateType",
                                Some(t),
                                format!("@type lists {term} more than once"),
                            );
                        } else {
                            cotypes.push(iri);
                        }
                        continue;
                    }
                    ("irrelevantDtmiOrTermAsCotype", "typeIrrelevantDtmiOrTerm")
                }
                None if term.starts_with("dtmi:") => ("invalidDtmiAsCotype", "typeInvalidDtmi"),
                None if term.contains(':') => ("notDtmiNorTermAsCotype", "typeNotDtmiNorTerm"),
                None => ("undefinedTermAsCotype", "typeUndefinedTerm"),
            };
            match self.apocrypha(version, case) {
                Outcome::Valid => undefined_cotype = true,
                Outcome::Tenable if self.opts.allow_undefined_extensions => undefined_cotype = true,
                _ => {
                    self.error(doc, &ptr(pointer, "@type"), code, Some(t), format!("@type '{term}' is not a DTDL v{version} type or a type of an active extension"));
                    ok = false;
                }
            }
        }
        if material.len() > 1 {
            self.error(
                doc,
                &ptr(pointer, "@type"),
                "multipleMaterialTypes",
                None,
                format!(
                    "@type names several material types: {}",
                    material.join(", ")
                ),
            );
            return None;
        }
        let class_name: &'static str = match material.first() {
            Some(c) => c,
            None => {
                // Extensible material classes (units…) are implied by their supplemental type.
                let implied = cotypes.iter().find_map(|c| {
                    supplemental_chain(c)
                        .last()
                        .and_then(|(_, t)| t.parent.as_deref())
                        .and_then(|p| class_of_iri(p, version))
                });
                let allowed_class = digest.class(allowed)?;
                let concrete = allowed_class.concrete_subclasses.get(&version.to_string());
                let optional = concrete.filter(|c| c.len() == 1).and_then(|c| {
                    let (k, class) = digest.material_classes.get_key_value(&c[0])?;
                    class
                        .type_optional_versions
                        .contains(&version)
                        .then_some(k.as_str())
                });
                match implied.or(optional) {
                    Some(c) if obj.get("@type").is_none() || implied.is_some() => c,
                    _ => {
                        if obj.get("@type").is_none() {
                            self.error(
                                doc,
                                pointer,
                                "ktwin:dtdl:missingType",
                                None,
                                format!("element has no @type; expected a {allowed} type"),
                            );
                        } else if ok {
                            self.error(
                                doc,
                                &ptr(pointer, "@type"),
                                "layerMissingMaterialType",
                                None,
                                format!(
                                    "@type specifies no material type; expected a {allowed} type"
                                ),
                            );
                        }
                        return None;
                    }
                }
            }
        };
        if !digest.is_subclass(class_name, allowed, version) {
            let code = if link.is_none() {
                "typeNotRootable"
            } else {
                "notRequiredType"
            };
            self.error(
                doc,
                &ptr(pointer, "@type"),
                code,
                None,
                format!("@type {class_name} is not allowed here; expected @type {allowed}"),
            );
            return None;
        }
        let class = digest.class(class_name)?;

        // @id: explicit (validated) or derived from the parent.
        let (id, explicit_id) = match obj.get("@id") {
            Some(v) => {
                let Some(s) = v.as_str().filter(|s| !s.is_empty()) else {
                    self.error(
                        doc,
                        &ptr(pointer, "@id"),
                        "idNotString",
                        Some(v),
                        "'@id' must be a non-empty string".into(),
                    );
                    return None;
                };
                if !self.check_id_definition(
                    doc,
                    &ptr(pointer, "@id"),
                    s,
                    version,
                    class_name,
                    &ctx.profile,
                ) {
                    return None;
                }
                (s.to_string(), true)
            }
            None => match &link {
                None => {
                    self.error(doc, pointer, "missingTopLevelId", None, "top-level element has no '@id'; expected a DTMI such as \"dtmi:example:Thing;1\"".into());
                    return None;
                }
                Some(l) if l.id_required => {
                    self.error(
                        doc,
                        pointer,
                        "missingRequiredId",
                        None,
                        format!("value of property '{}' must have an '@id'", l.prop),
                    );
                    return None;
                }
                Some(l) => (self.derived_id(l), false),
            },
        };
        if !ok {
            return None;
        }

        // Supplemental type checks (placement, version, co-occurrence).
        for c in &cotypes {
            let chain = supplemental_chain(c);
            let Some((_, st)) = chain.first() else {
                continue;
            };
            if st.is_abstract {
                self.error(
                    doc,
                    &ptr(pointer, "@type"),
                    "abstractSupplementalType",
                    None,
                    format!("supplemental type {c} is abstract"),
                );
            }
            if !st
                .cotypes
                .iter()
                .any(|allowed| digest.is_subclass(class_name, allowed, version))
                && !st.cotypes.is_empty()
            {
                self.error(
                    doc,
                    &ptr(pointer, "@type"),
                    "invalidCotype",
                    None,
                    format!(
                        "supplemental type {c} can only be applied to {}",
                        st.cotypes.join(", ")
                    ),
                );
            }
            if !st.cotype_versions.contains(&version) {
                self.error(
                    doc,
                    &ptr(pointer, "@type"),
                    "invalidCotypeVersion",
                    None,
                    format!("supplemental type {c} cannot be used in DTDL v{version}"),
                );
            }
            for needed in &st.cocotypes {
                if !cotypes.contains(needed) {
                    self.error(
                        doc,
                        &ptr(pointer, "@type"),
                        "missingCocotype",
                        None,
                        format!("supplemental type {c} requires co-type {needed}"),
                    );
                }
            }
            for banned in &st.discotypes {
                if cotypes.contains(banned) {
                    self.error(
                        doc,
                        &ptr(pointer, "@type"),
                        "disallowedCocotype",
                        None,
                        format!("supplemental type {c} cannot be combined with {banned}"),
                    );
                }
            }
        }

        let me = self.arena.elems.len();
        let partition = match &link {
            Some(l) => self.arena.elems[l.parent].partition,
            None => me,
        };
        self.arena.elems.push(Element {
            id: id.clone(),
            class: class_name.to_string(),
            cotypes: cotypes.clone(),
            undefined_cotype,
            version,
            doc,
            pointer: pointer.to_string(),
            parent: link.as_ref().map(|l| (l.parent, l.prop.to_string())),
            partition,
            props: BTreeMap::new(),
            supplemental: BTreeMap::new(),
        });
        if explicit_id {
            if self.arena.by_id.insert(id.clone(), me).is_some() {
                self.duplicates.insert(id.clone());
            }
        } else {
            self.arena.by_id.entry(id.clone()).or_insert(me);
        }

        // Supplemental properties available from the cotypes (and their ancestors).
        let mut supp_defs: HashMap<
            &'static str,
            (&'static str, &'static crate::digest::SupplementalProperty),
        > = HashMap::new();
        let mut definer: HashMap<&'static str, &str> = HashMap::new();
        for c in &cotypes {
            // Within one type's ancestry the nearest definition wins (it narrows the value type).
            let mut own: HashMap<
                &'static str,
                (&'static str, &'static crate::digest::SupplementalProperty),
            > = HashMap::new();
            for (tiri, t) in supplemental_chain(c) {
                for (piri, pdef) in &t.properties {
                    own.entry(piri.as_str()).or_insert((tiri, pdef));
                }
            }
            for (piri, def) in own {
                match definer.get(piri) {
                    Some(other)
                        if *other != c.as_str()
                            && supp_defs.get(piri).is_some_and(|(t, _)| *t != def.0) =>
                    {
                        self.error(
                            doc,
                            &ptr(pointer, "@type"),
                            "conflictingSupplementalTypes",
                            None,
                            format!(
                                "supplemental types {other} and {c} both add property '{}'",
                                def.1.property_name
                            ),
                        );
                    }
                    _ => {
                        definer.insert(piri, c.as_str());
                        supp_defs.insert(piri, def);
                    }
                }
            }
        }

        let mut seen_props = std::collections::HashSet::new();
        for (key, value) in obj {
            if matches!(key.as_str(), "@context" | "@id" | "@type") {
                continue;
            }
            let p = ptr(pointer, key);
            if key.starts_with('@') {
                if key == "@graph" {
                    self.error(
                        doc,
                        &p,
                        "graphDisallowed",
                        None,
                        "'@graph' is not allowed".into(),
                    );
                } else if version >= 3 {
                    self.error(
                        doc,
                        &p,
                        "keywordDisallowed",
                        None,
                        format!("JSON-LD keyword '{key}' is not allowed in DTDL v{version}"),
                    );
                }
                continue;
            }
            let iri = ctx.resolve_term(key).map(str::to_string).or_else(|| {
                (key.starts_with("dtmi:") && is_dtmi_syntax(key, 3)).then(|| key.clone())
            });
            if let Some(iri) = &iri {
                self.recommend_term(doc, &p, key, Some(iri), ctx);
                if let Some(name) = digest.property_names.get(iri)
                    && let Some((common, rules)) = class.property(name, version)
                    && iri.ends_with(&format!(";{version}"))
                {
                    if !seen_props.insert(name.clone()) {
                        self.error(doc, &p, "duplicatePropertyName", None, format!("property '{name}' is given more than once (as a term and as a DTMI)"));
                        continue;
                    }
                    if value.is_null() {
                        self.error(
                            doc,
                            &p,
                            "ktwin:dtdl:nullValue",
                            None,
                            format!(
                                "property '{key}' is null; give a value or leave the property out"
                            ),
                        );
                        continue;
                    }
                    if rules.deprecated {
                        self.warning(
                            doc,
                            &p,
                            "ktwin:dtdl:deprecatedProperty",
                            Some(value),
                            format!("property '{key}' is deprecated in DTDL v{version}"),
                        );
                    }
                    if !rules.allowed {
                        self.error(
                            doc,
                            &p,
                            "noTypeThatAllows",
                            Some(value),
                            format!("property '{key}' cannot be set on a {class_name}"),
                        );
                        continue;
                    }
                    let name = name.clone();
                    self.walk_property(doc, me, &p, key, &name, value, common, rules, ctx);
                    continue;
                }
                if let Some((tiri, pdef)) = supp_defs.get(iri.as_str()) {
                    if !seen_props.insert(iri.clone()) {
                        self.error(
                            doc,
                            &p,
                            "duplicatePropertyName",
                            None,
                            format!(
                                "property '{}' is given more than once (as a term and as a DTMI)",
                                pdef.property_name
                            ),
                        );
                        continue;
                    }
                    if !self.walk_supplemental(doc, me, &p, key, iri, value, tiri, pdef, ctx) {
                        // Present though invalid: do not also report it missing.
                        self.arena.elems[me]
                            .supplemental
                            .entry(iri.clone())
                            .or_default();
                    }
                    continue;
                }
            }
            let (case, code) = match &iri {
                Some(iri)
                    if digest.property_names.contains_key(iri)
                        || digest
                            .supplemental_types
                            .values()
                            .any(|t| t.properties.contains_key(iri)) =>
                {
                    (
                        "irrelevantDtmiOrTermAsProperty",
                        "propertyIrrelevantDtmiOrTerm",
                    )
                }
                Some(_) => (
                    "irrelevantDtmiOrTermAsProperty",
                    "propertyIrrelevantDtmiOrTerm",
                ),
                None if key.starts_with("dtmi:") => {
                    ("invalidDtmiAsProperty", "propertyInvalidDtmi")
                }
                None if key.contains(':') => ("notDtmiNorTermAsProperty", "propertyNotDtmiNorTerm"),
                None => ("undefinedTermAsProperty", "propertyUndefinedTerm"),
            };
            if self.opts.lenient_ids
                && key == "unit"
                && value.is_string()
                && matches!(class_name, "Property" | "Telemetry")
            {
                // The KTWIN ontology dropped semantic types but kept their units.
                self.warning(doc, &p, "ktwin:dtdl:legacyUnit", Some(value), format!("'unit' needs a semantic type such as [\"{class_name}\", \"Temperature\"]; kept because of --lenient-ids"));
                self.arena.elems[me].supplemental.insert(
                    format!("dtmi:dtdl:property:unit;{version}"),
                    vec![PropValue::Literal(value.clone())],
                );
                continue;
            }
            // Unknown properties are only possible on elements co-typed with an unknown type.
            let outcome = if self.arena.elems[me].undefined_cotype {
                self.apocrypha(version, case)
            } else {
                Outcome::Invalid
            };
            match outcome {
                Outcome::Valid => {}
                Outcome::Tenable if self.opts.allow_undefined_extensions => {}
                _ => {
                    self.error(doc, &p, code, None, format!("property '{key}' is not defined for @type {class_name} in DTDL v{version} or any active extension"));
                }
            }
        }

        // Required properties.
        let mut names: Vec<&String> = class.properties.keys().collect();
        names.sort();
        for name in names {
            let Some((common, rules)) = class.property(name, version) else {
                continue;
            };
            if !rules.allowed {
                continue;
            }
            let required = rules.min_count.unwrap_or(0) >= 1 || !common.optional;
            if required
                && !self.arena.elems[me].props.contains_key(name)
                && !obj_has_property(obj, name, ctx)
            {
                let code = if common.literal {
                    "missingLiteralProperty"
                } else {
                    "missingObjectProperty"
                };
                self.error(
                    doc,
                    pointer,
                    code,
                    None,
                    format!("{class_name} requires property '{name}'"),
                );
            }
        }
        for (piri, (tiri, pdef)) in &supp_defs {
            if pdef.min_count.unwrap_or(0) >= 1
                && !self.arena.elems[me].supplemental.contains_key(*piri)
            {
                let code = if LITERAL_TYPES.contains(&pdef.type_name.as_deref().unwrap_or("")) {
                    "missingSupplementalLiteralProperty"
                } else {
                    "missingSupplementalObjectProperty"
                };
                self.error(
                    doc,
                    pointer,
                    code,
                    None,
                    format!("co-type {tiri} requires property '{}'", pdef.property_name),
                );
            }
        }
        Some(me)
    }

    /// Warns when an IRI is written where the active contexts define a term for it.
    fn recommend_term(
        &mut self,
        doc: usize,
        pointer: &str,
        written: &str,
        iri: Option<&str>,
        ctx: &ActiveContext,
    ) {
        // Only IRIs can have a shorter term; plain terms return at once.
        if !written.starts_with("dtmi:") {
            return;
        }
        let Some(iri) = iri.filter(|i| *i == written) else {
            return;
        };
        if let Some(term) = digest().terms_by_iri.get(iri)
            && ctx.resolve_term(term) == Some(iri)
        {
            self.warning(
                doc,
                pointer,
                "ktwin:dtdl:preferTerm",
                Some(&Value::from(written)),
                format!("write the term '{term}' instead of the IRI '{written}'"),
            );
        }
    }

    fn derived_id(&self, link: &ChildLink<'_>) -> String {
        let parent = &self.arena.elems[link.parent].id;
        let (base, version) = match parent.rsplit_once(';') {
            Some((b, v)) => (b, Some(v)),
            None => (parent.as_str(), None),
        };
        let mut id = format!("{base}:_{}", link.prop);
        if !link.segment.is_empty() {
            id.push_str(":__");
            id.push_str(&link.segment);
        }
        if let Some(v) = version {
            id.push(';');
            id.push_str(v);
        }
        id
    }

    fn check_id_definition(
        &mut self,
        doc: usize,
        pointer: &str,
        id: &str,
        version: u8,
        class: &str,
        profile: &str,
    ) -> bool {
        let digest = digest();
        let vkey = version.to_string();
        let rule = digest.identifier_definition.get(&vkey);
        let pat = rule
            .and_then(|r| r.get("pattern"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if id.contains('#') {
            self.error(
                doc,
                pointer,
                "disallowedIdFragment",
                Some(&Value::from(id)),
                format!("identifier '{id}' has a fragment"),
            );
            return false;
        }
        if !matches(pat, id) {
            if self.opts.lenient_ids && is_lenient_id(id) {
                self.warning(
                    doc,
                    pointer,
                    "ktwin:dtdl:lenientId",
                    Some(&Value::from(id)),
                    format!("identifier '{id}' is not a DTMI; accepted because of --lenient-ids"),
                );
                return true;
            }
            let hint = if is_lenient_id(id) {
                " (non-DTMI KTWIN identifiers need --lenient-ids)"
            } else {
                ""
            };
            self.error(doc, pointer, "invalidId", Some(&Value::from(id)), format!("identifier '{id}' is not a valid DTMI for DTDL v{version}; expected e.g. \"dtmi:example:Thing;1\"{hint}"));
            return false;
        }
        let max_len = rule
            .and_then(|r| r.get("maxLength"))
            .and_then(|m| m.get(profile).or_else(|| m.get("")))
            .and_then(Value::as_i64)
            .unwrap_or(i64::MAX);
        if id.len() as i64 > max_len {
            self.error(
                doc,
                pointer,
                "idTooLong",
                Some(&Value::from(id)),
                format!(
                    "identifier is {} characters long, the limit is {max_len}",
                    id.len()
                ),
            );
            return false;
        }
        if let Some(type_max) = digest
            .identifier_definition
            .get(class)
            .and_then(|c| c.get(&vkey))
            .and_then(|c| c.get("maxLength"))
            .and_then(|m| m.get(profile).or_else(|| m.get("")))
            .and_then(Value::as_i64)
            && id.len() as i64 > type_max
        {
            self.error(
                doc,
                pointer,
                "idTooLongForType",
                Some(&Value::from(id)),
                format!(
                    "identifier of a {class} is {} characters long, the limit is {type_max}",
                    id.len()
                ),
            );
            return false;
        }
        if !self.standard_mode
            && digest
                .reserved_id_prefixes
                .values()
                .flatten()
                .any(|prefix| id.starts_with(prefix.as_str()))
        {
            self.error(
                doc,
                pointer,
                "reservedId",
                Some(&Value::from(id)),
                format!("identifier '{id}' begins with a reserved prefix"),
            );
            return false;
        }
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_property(
        &mut self,
        doc: usize,
        me: ElemId,
        pointer: &str,
        key: &str,
        name: &str,
        value: &Value,
        common: &'static PropertyCommon,
        rules: &'static PropertyRules,
        ctx: &ActiveContext,
    ) {
        let version = ctx.version;
        if common.datatype.as_deref() == Some("langString") {
            self.walk_lang_string(doc, me, pointer, key, name, value, rules, ctx);
            return;
        }
        let items: Vec<(&Value, String)> = match value {
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, v)| (v, ptr(pointer, &i.to_string())))
                .collect(),
            v => vec![(v, pointer.to_string())],
        };
        let kind = if common.literal {
            common.datatype.as_deref().unwrap_or("literal")
        } else if common.class.is_some() {
            "object"
        } else {
            "identifier"
        };
        if !common.plural && items.len() > 1 {
            self.error(
                doc,
                pointer,
                &format!("{kind}MultipleValues"),
                None,
                format!("property '{key}' takes a single value"),
            );
            return;
        }
        if let Some(max) = rules.max_count
            && items.len() as i64 > max
        {
            let code = if kind == "object" {
                "objectCountAboveMax"
            } else {
                "identifierCountAboveMax"
            };
            self.error(
                doc,
                pointer,
                code,
                None,
                format!(
                    "property '{key}' has {} values, at most {max} allowed",
                    items.len()
                ),
            );
            return;
        }
        if let Some(min) = rules.min_count
            && (items.len() as i64) < min
        {
            self.error(
                doc,
                pointer,
                &format!("{kind}CountBelowMin"),
                None,
                format!(
                    "property '{key}' has {} values, at least {min} required",
                    items.len()
                ),
            );
            return;
        }
        let mut values = Vec::new();
        for (idx, (item, p)) in items.iter().enumerate() {
            if common.literal {
                if let Some(v) = self.check_literal(
                    doc,
                    p,
                    key,
                    item,
                    common.datatype.as_deref(),
                    rules,
                    &ctx.profile,
                    version,
                ) {
                    values.push(PropValue::Literal(v));
                }
                continue;
            }
            if common.class.is_none() {
                // An identifier-valued property (Relationship target): a DTMI, not resolved.
                match item.as_str() {
                    Some(s)
                        if rules.pattern.as_ref().is_none_or(|pat| matches(pat, s))
                            || (self.opts.lenient_ids && is_lenient_id(s)) =>
                    {
                        values.push(PropValue::Literal((*item).clone()));
                    }
                    _ => {
                        let hint = if item.as_str().is_some_and(is_lenient_id) {
                            " (non-DTMI KTWIN identifiers need --lenient-ids)"
                        } else {
                            ""
                        };
                        self.error(
                            doc,
                            p,
                            "identifierNotDtmi",
                            Some(item),
                            format!("property '{key}' must be a DTMI{hint}"),
                        );
                    }
                }
                continue;
            }
            match item {
                Value::String(s) => {
                    if let Some(target) = self.reference(doc, p, key, s, rules, ctx) {
                        self.refs.push(RefSite {
                            from: me,
                            prop: name.to_string(),
                            target: target.clone(),
                            pointer: p.clone(),
                            class: rules.class.clone().or_else(|| common.class.clone()),
                            versions: rules.versions.clone(),
                        });
                        values.push(PropValue::Ref(target));
                    }
                }
                Value::Object(child) if common.class.is_some() && rules.values.is_none() => {
                    if version >= 3 && child.len() == 1 && child.contains_key("@id") {
                        self.error(doc, p, "idReference", Some(item), format!("property '{key}' has an inline definition with nothing but '@id'; write the DTMI string instead"));
                        continue;
                    }
                    let allowed = rules
                        .class
                        .clone()
                        .or_else(|| common.class.clone())
                        .unwrap_or_default();
                    let segment = common
                        .dtmi_segment
                        .as_ref()
                        .and_then(|seg| child.get(seg))
                        .and_then(|v| match v {
                            Value::String(s) => Some(s.clone()),
                            Value::Number(n) => Some(n.to_string()),
                            _ => None,
                        })
                        .unwrap_or_else(|| {
                            if common.plural {
                                idx.to_string()
                            } else {
                                String::new()
                            }
                        });
                    let link = ChildLink {
                        parent: me,
                        prop: name,
                        segment,
                        id_required: rules.id_required,
                    };
                    if let Some(c) = self.walk_element(doc, child, p, ctx, &allowed, Some(link)) {
                        let child_version = self.arena.elems[c].version;
                        if !rules.versions.is_empty() && !rules.versions.contains(&child_version) {
                            self.error(doc, p, "disallowedVersionDefinition", None, format!("property '{key}' cannot hold an element in DTDL v{child_version}"));
                        }
                        values.push(PropValue::Child(c));
                    }
                }
                Value::Object(_) => {
                    self.error(
                        doc,
                        p,
                        "refObjectNotAllowed",
                        Some(item),
                        format!("property '{key}' must be a DTMI or term string"),
                    );
                }
                other => {
                    self.error(
                        doc,
                        p,
                        "refNotStringOrObject",
                        Some(other),
                        format!(
                            "property '{key}' must be a DTMI string or an inline {} definition",
                            common.class.as_deref().unwrap_or("element")
                        ),
                    );
                }
            }
        }
        // Uniqueness of names (and enum values) among inline children.
        for unique in &rules.unique_properties {
            let mut seen: HashMap<String, ()> = HashMap::new();
            for v in &values {
                let PropValue::Child(c) = v else { continue };
                let Some(val) = self.arena.elems[*c].literal(unique).cloned() else {
                    continue;
                };
                let text = val.to_string();
                if seen.insert(text, ()).is_some() {
                    self.error(
                        doc,
                        pointer,
                        "nonUniquePropertyValue",
                        Some(&val),
                        format!(
                            "property '{key}' has more than one element whose '{unique}' is {val}"
                        ),
                    );
                }
            }
        }
        self.arena.elems[me].props.insert(name.to_string(), values);
    }

    /// Resolves a string value of an object property to an identifier.
    fn reference(
        &mut self,
        doc: usize,
        pointer: &str,
        key: &str,
        s: &str,
        rules: &PropertyRules,
        ctx: &ActiveContext,
    ) -> Option<String> {
        let version = ctx.version;
        if let Some(uris) = &rules.value_uris {
            let iri = ctx
                .resolve_term(s)
                .map(str::to_string)
                .unwrap_or_else(|| s.to_string());
            if uris.contains(&iri) {
                return Some(iri);
            }
            let allowed = rules
                .values
                .as_ref()
                .map(|v| v.join(", "))
                .unwrap_or_default();
            self.error(
                doc,
                pointer,
                "notRequiredValue",
                Some(&Value::from(s)),
                format!("property '{key}' has value '{s}'; expected one of: {allowed}"),
            );
            return None;
        }
        if let Some(iri) = ctx.resolve_term(s) {
            return Some(iri.to_string());
        }
        self.recommend_term(doc, pointer, s, Some(s), ctx);
        if let Some(rule) = digest().identifier_reference.get(&version.to_string())
            && matches(&rule.pattern, s)
        {
            let max = limit_for(&rule.max_length, &ctx.profile).unwrap_or(i64::MAX);
            if s.len() as i64 > max {
                self.error(
                    doc,
                    pointer,
                    "identifierTooLong",
                    Some(&Value::from(s)),
                    format!(
                        "identifier is {} characters long, the limit is {max}",
                        s.len()
                    ),
                );
                return None;
            }
            return Some(s.to_string());
        }
        if self.opts.lenient_ids && is_lenient_id(s) {
            return Some(s.to_string());
        }
        if self.opts.lenient_ids
            && let Some((term, iri)) = digest().contexts.get(ctx.dtdl_context()).and_then(|c| {
                c.iter().find(|(t, i)| {
                    t.eq_ignore_ascii_case(s) && i.starts_with("dtmi:dtdl:instance:")
                })
            })
        {
            self.warning(
                doc,
                pointer,
                "ktwin:dtdl:legacyTermCase",
                Some(&Value::from(s)),
                format!("'{s}' is not a DTDL term; read as '{term}' because of --lenient-ids"),
            );
            return Some(iri.clone());
        }
        let hint = if is_lenient_id(s) {
            " (non-DTMI KTWIN identifiers need --lenient-ids)"
        } else {
            ""
        };
        self.error(doc, pointer, "badDtmiOrTerm", Some(&Value::from(s)), format!("property '{key}' has value '{s}', which is neither a DTMI nor a DTDL v{version} term{hint}"));
        None
    }

    /// Checks a literal value; returns the normalized JSON value.
    #[allow(clippy::too_many_arguments)]
    fn check_literal(
        &mut self,
        doc: usize,
        pointer: &str,
        key: &str,
        item: &Value,
        datatype: Option<&str>,
        rules: &PropertyRules,
        profile: &str,
        version: u8,
    ) -> Option<Value> {
        let raw = match item {
            Value::Object(o) => self.value_object(doc, pointer, key, o, datatype, version)?,
            v => v,
        };
        match datatype {
            Some("string") => {
                let Some(s) = raw.as_str() else {
                    self.error(
                        doc,
                        pointer,
                        "stringNotString",
                        Some(raw),
                        format!("property '{key}' must be a JSON string"),
                    );
                    return None;
                };
                if let Some(max) = rules
                    .max_length
                    .as_ref()
                    .and_then(|m| limit_for(m, profile))
                    && s.chars().count() as i64 > max
                {
                    self.error(
                        doc,
                        pointer,
                        "stringTooLong",
                        Some(raw),
                        format!(
                            "property '{key}' is {} characters long, the limit is {max}",
                            s.chars().count()
                        ),
                    );
                    return None;
                }
                if let Some(p) = &rules.pattern
                    && !matches(p, s)
                {
                    let desc = rules
                        .pattern_desc
                        .as_ref()
                        .and_then(|d| d.get("en-us"))
                        .cloned()
                        .unwrap_or_else(|| format!("match {p}"));
                    self.error(
                        doc,
                        pointer,
                        "stringInvalid",
                        Some(raw),
                        format!(
                            "property '{key}' has value '{s}', which is invalid: it must {desc}"
                        ),
                    );
                    return None;
                }
                Some(raw.clone())
            }
            Some("boolean") => {
                if raw.is_boolean() {
                    Some(raw.clone())
                } else {
                    self.error(
                        doc,
                        pointer,
                        "booleanNotBoolean",
                        Some(raw),
                        format!("property '{key}' must be true or false"),
                    );
                    None
                }
            }
            Some("integer") => {
                let Some(n) = raw.as_i64() else {
                    self.error(
                        doc,
                        pointer,
                        "integerNotInteger",
                        Some(raw),
                        format!("property '{key}' must be a JSON integer"),
                    );
                    return None;
                };
                if let Some(min) = rules.min_inclusive
                    && n < min
                {
                    self.error(
                        doc,
                        pointer,
                        "valueBelowMin",
                        Some(raw),
                        format!("property '{key}' is {n}, the minimum is {min}"),
                    );
                    return None;
                }
                if let Some(max) = rules.max_inclusive
                    && n > max
                {
                    self.error(
                        doc,
                        pointer,
                        "valueAboveMax",
                        Some(raw),
                        format!("property '{key}' is {n}, the maximum is {max}"),
                    );
                    return None;
                }
                Some(raw.clone())
            }
            _ => {
                if raw.is_string() || raw.is_i64() || raw.is_u64() || raw.is_boolean() {
                    Some(raw.clone())
                } else {
                    self.error(
                        doc,
                        pointer,
                        "literalNotValid",
                        Some(raw),
                        format!("property '{key}' must be a JSON string, integer or boolean"),
                    );
                    None
                }
            }
        }
    }

    /// Unwraps a JSON-LD value object (`{"@value": v, "@type": "xsd:T"}`).
    fn value_object<'v>(
        &mut self,
        doc: usize,
        pointer: &str,
        key: &str,
        o: &'v Map<String, Value>,
        datatype: Option<&str>,
        version: u8,
    ) -> Option<&'v Value> {
        let kind = datatype.unwrap_or("literal");
        self.warning(
            doc,
            pointer,
            "ktwin:dtdl:valueObject",
            None,
            format!("property '{key}' uses a JSON-LD value object; a plain JSON value is simpler"),
        );
        let Some(v) = o.get("@value") else {
            self.error(
                doc,
                pointer,
                &format!("{kind}ObjectNoValue"),
                None,
                format!("property '{key}' has an object without '@value'"),
            );
            return None;
        };
        for k in o.keys() {
            let allowed = match k.as_str() {
                "@value" | "@type" => true,
                "@id" | "@context" | "@graph" => false,
                _ => version < 3,
            };
            if !allowed {
                self.error(doc, &ptr(pointer, k), "valueObjectKeyword", None, format!("property '{key}' value object may only have '@value' and '@type', found '{k}'"));
                return None;
            }
        }
        if let Some(t) = o.get("@type") {
            let single = match t {
                Value::String(s) => Some(s.as_str()),
                Value::Array(a) if a.len() == 1 => a[0].as_str(),
                _ => None,
            };
            let candidates: &[&str] = match datatype {
                Some(d) => &[d][..],
                None => &["string", "integer", "boolean"],
            };
            let xsd = candidates[0];
            let ok = single.is_some_and(|s| {
                candidates.iter().any(|x| {
                    s == format!("xsd:{x}") || s == format!("http://www.w3.org/2001/XMLSchema#{x}")
                })
            });
            if !ok {
                self.error(
                    doc,
                    &ptr(pointer, "@type"),
                    &format!("{kind}TypeNot{}", capitalize(kind)),
                    Some(t),
                    format!("property '{key}' value object '@type' must be 'xsd:{xsd}'"),
                );
                return None;
            }
        }
        Some(v)
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_lang_string(
        &mut self,
        doc: usize,
        me: ElemId,
        pointer: &str,
        key: &str,
        name: &str,
        value: &Value,
        rules: &PropertyRules,
        ctx: &ActiveContext,
    ) {
        let (profile, version) = (ctx.profile.as_str(), ctx.version);
        let default_lang = rules
            .default_language
            .clone()
            .unwrap_or_else(|| "en".into());
        let max = rules
            .max_length
            .as_ref()
            .and_then(|m| limit_for(m, profile));
        let mut map: Map<String, Value> = Map::new();
        let mut add =
            |this: &mut Self, lang: &str, text: &Value, p: &str, map: &mut Map<String, Value>| {
                let Some(s) = text.as_str() else {
                    this.error(
                        doc,
                        p,
                        "langStringValueNotString",
                        Some(text),
                        format!("property '{key}' must hold strings"),
                    );
                    return;
                };
                if !is_language_code(lang) {
                    this.error(
                        doc,
                        p,
                        "langStringInvalidCode",
                        Some(&Value::from(lang)),
                        format!("property '{key}' has invalid language code '{lang}'"),
                    );
                    return;
                }
                if let Some(max) = max
                    && s.chars().count() as i64 > max
                {
                    this.error(
                        doc,
                        p,
                        "langStringValueTooLong",
                        Some(text),
                        format!(
                            "property '{key}' is {} characters long, the limit is {max}",
                            s.chars().count()
                        ),
                    );
                    return;
                }
                if map.insert(lang.to_string(), Value::from(s)).is_some() {
                    this.error(
                        doc,
                        p,
                        "langStringCodeNotUnique",
                        Some(&Value::from(lang)),
                        format!("property '{key}' has several values for language '{lang}'"),
                    );
                }
            };
        match value {
            Value::String(_) => add(self, &default_lang, value, pointer, &mut map),
            Value::Object(o) if o.contains_key("@value") => {
                self.error(doc, pointer, "langTagValueInLangMap", Some(value), format!("property '{key}' is a language-tagged value object; expected a language map such as {{\"en\": \"text\"}}"));
            }
            Value::Object(o) => {
                for (lang, text) in o {
                    if lang.starts_with('@') {
                        self.error(
                            doc,
                            &ptr(pointer, lang),
                            "langMapObjKeyword",
                            None,
                            format!("property '{key}' has keyword '{lang}' in a language map"),
                        );
                        continue;
                    }
                    add(self, lang, text, &ptr(pointer, lang), &mut map);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = ptr(pointer, &i.to_string());
                    match item {
                        Value::String(_) => add(self, &default_lang, item, &p, &mut map),
                        Value::Object(o) if o.contains_key("@value") => self.lang_value_object(
                            doc,
                            version,
                            &p,
                            key,
                            o,
                            &default_lang,
                            &mut add,
                            &mut map,
                        ),
                        Value::Object(_) => {
                            self.error(doc, &p, "langStringElementNoValue", Some(item), format!("property '{key}' array elements must be strings or {{\"@value\", \"@language\"}} objects"));
                        }
                        other => {
                            self.error(doc, &p, "langStringElementNotStringOrObject", Some(other), format!("property '{key}' elements must be strings or language-tagged objects"));
                        }
                    }
                }
            }
            other => {
                self.error(
                    doc,
                    pointer,
                    "langStringElementNotStringOrObject",
                    Some(other),
                    format!("property '{key}' must be a string or a language map"),
                );
            }
        }
        self.arena.elems[me].props.insert(
            name.to_string(),
            vec![PropValue::Literal(Value::Object(map))],
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn lang_value_object(
        &mut self,
        doc: usize,
        version: u8,
        pointer: &str,
        key: &str,
        o: &Map<String, Value>,
        default_lang: &str,
        add: &mut impl FnMut(&mut Self, &str, &Value, &str, &mut Map<String, Value>),
        map: &mut Map<String, Value>,
    ) {
        for k in o.keys() {
            let allowed = matches!(k.as_str(), "@value" | "@language")
                || (version < 3 && !matches!(k.as_str(), "@id" | "@context" | "@graph"));
            if !allowed {
                self.error(
                    doc,
                    &ptr(pointer, k),
                    "langStringElementInvalidProp",
                    None,
                    format!("property '{key}' language-tagged value has extra property '{k}'"),
                );
                return;
            }
        }
        let Some(text) = o.get("@value") else {
            self.error(
                doc,
                pointer,
                "langStringElementNoValue",
                None,
                format!("property '{key}' language-tagged value has no '@value'"),
            );
            return;
        };
        let lang = match o.get("@language") {
            Some(Value::String(l)) => l.clone(),
            Some(other) => {
                self.error(
                    doc,
                    pointer,
                    "langStringElementCodeNotString",
                    Some(other),
                    format!("property '{key}' '@language' must be a string"),
                );
                return;
            }
            None => default_lang.to_string(),
        };
        add(self, &lang, text, pointer, map)
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_supplemental(
        &mut self,
        doc: usize,
        me: ElemId,
        pointer: &str,
        key: &str,
        iri: &str,
        value: &Value,
        type_iri: &str,
        def: &'static crate::digest::SupplementalProperty,
        ctx: &ActiveContext,
    ) -> bool {
        let items: Vec<&Value> = match value {
            Value::Array(a) => a.iter().collect(),
            v => vec![v],
        };
        if !def.plural && items.len() > 1 {
            self.error(
                doc,
                pointer,
                "literalMultipleValues",
                None,
                format!("property '{key}' takes a single value"),
            );
            return false;
        }
        if let Some(max) = def.max_count
            && items.len() as i64 > max
        {
            self.error(
                doc,
                pointer,
                "objectCountAboveMax",
                None,
                format!(
                    "property '{key}' has {} values, at most {max} allowed",
                    items.len()
                ),
            );
            return false;
        }
        if let Some(min) = def.min_count
            && (items.len() as i64) < min
        {
            self.error(
                doc,
                pointer,
                "objectCountBelowMin",
                None,
                format!(
                    "property '{key}' has {} values, at least {min} required",
                    items.len()
                ),
            );
            return false;
        }
        let type_name = def.type_name.as_deref().unwrap_or("");
        let mut values = Vec::new();
        for item in items {
            let raw = match item {
                Value::Object(o) if o.contains_key("@value") => &o["@value"],
                v => v,
            };
            let good = match type_name {
                "string" | "IRI" | "duration" => raw.as_str().is_some_and(|s| {
                    def.pattern.as_ref().is_none_or(|p| matches(p, s))
                        && def.max_length.is_none_or(|m| s.chars().count() as i64 <= m)
                }),
                "integer" => raw.as_i64().is_some_and(|n| {
                    def.min_inclusive
                        .as_ref()
                        .and_then(Value::as_i64)
                        .is_none_or(|m| n >= m)
                        && def
                            .max_inclusive
                            .as_ref()
                            .and_then(Value::as_i64)
                            .is_none_or(|m| n <= m)
                }),
                "decimal" | "double" => raw.is_number(),
                "boolean" => raw.is_boolean(),
                _ => {
                    // An object property: a term or DTMI naming a (standard) element.
                    let Some(s) = raw.as_str() else {
                        self.error(
                            doc,
                            pointer,
                            "refNotStringOrObject",
                            Some(raw),
                            format!("property '{key}' must name a {type_name}"),
                        );
                        return false;
                    };
                    let target = ctx
                        .resolve_term(s)
                        .map(str::to_string)
                        .unwrap_or_else(|| s.to_string());
                    if !self.standard_mode && !self.supplemental_target_ok(&target, def) {
                        self.error(doc, pointer, "notRequiredType", Some(raw), format!("property '{key}' has value '{s}', which is not a {type_name} allowed by {type_iri}"));
                        return false;
                    }
                    values.push(PropValue::Ref(target));
                    continue;
                }
            };
            if !good {
                self.error(
                    doc,
                    pointer,
                    "stringInvalid",
                    Some(raw),
                    format!("property '{key}' has value {raw}, which is not a valid {type_name}"),
                );
                return false;
            }
            values.push(PropValue::Literal(raw.clone()));
        }
        self.arena.elems[me]
            .supplemental
            .insert(iri.to_string(), values);
        true
    }

    /// True when a supplemental object property may refer to `target` (units and the like).
    fn supplemental_target_ok(
        &self,
        target: &str,
        def: &crate::digest::SupplementalProperty,
    ) -> bool {
        let Some((elem, _)) = self.lookup(target) else {
            return false;
        };
        if let Some(parent) = def.child_of.as_deref() {
            let Some(std) = self.std else {
                return false;
            };
            let parent_id = elem
                .parent
                .as_ref()
                .map(|(p, _)| std.elems.get(*p).map(|e| e.id.as_str()).unwrap_or(""));
            return parent_id == Some(parent);
        }
        let Some(required) = def.type_iri.as_deref() else {
            return true;
        };
        if let Some(class) = required
            .strip_prefix("dtmi:dtdl:class:")
            .and_then(|r| r.split(';').next())
            && digest().is_subclass(&elem.class, class, elem.version)
        {
            return true;
        }
        elem.cotypes.iter().any(|c| {
            supplemental_chain(c)
                .iter()
                .any(|(iri, _)| *iri == required)
        })
    }
}

/// True when the object carries the property under some key the context maps to it.
fn obj_has_property(obj: &Map<String, Value>, name: &str, ctx: &ActiveContext) -> bool {
    obj.iter().any(|(k, v)| {
        !v.is_null()
            && (k == name
                || ctx
                    .resolve_term(k)
                    .is_some_and(|iri| digest().property_names.get(iri).is_some_and(|n| n == name)))
    })
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}
