//! `@type`: one material class plus supplemental types, and the rules of their combination.

use serde_json::Value;

use super::{Here, Outcome, Parser, resolve_iri, supplemental_chain};
use crate::digest::digest;
use crate::engine::ElemId;

/// What an element's `@type` says it is.
pub(crate) struct Typing {
    /// The material class (`Interface`, `Property`, …).
    pub class: &'static str,
    /// Supplemental type IRIs, in order of appearance.
    pub cotypes: Vec<String>,
    /// The `@type` has a term or IRI the active contexts do not define (tolerated).
    pub undefined_cotype: bool,
    /// False when an entry of `@type` was rejected.
    pub ok: bool,
}

/// The `@type` entries read so far.
#[derive(Default)]
struct TypeList {
    material: Vec<&'static str>,
    cotypes: Vec<String>,
    undefined_cotype: bool,
    ok: bool,
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

impl Parser<'_> {
    /// Reads `@type` and settles the material class, which must be `allowed` here.
    pub(super) fn element_types(
        &mut self,
        here: &Here<'_>,
        allowed: &str,
        parent: Option<ElemId>,
    ) -> Option<Typing> {
        let type_values: Vec<&Value> = match here.obj.get("@type") {
            Some(Value::Array(a)) if a.is_empty() => {
                self.missing_material_type(here, allowed, parent);
                return None;
            }
            Some(Value::Array(a)) => a.iter().collect(),
            Some(v) => vec![v],
            None => Vec::new(),
        };
        let mut list = TypeList {
            ok: true,
            ..TypeList::default()
        };
        for t in type_values {
            self.read_type(here, t, &mut list);
        }
        if list.material.len() > 1 {
            self.at(here.doc, &here.key("@type")).error(
                "multipleMaterialTypes",
                format!(
                    "@type names several material types: {}",
                    list.material.join(", ")
                ),
            );
            return None;
        }
        let class = self.material_class(here, &list, allowed, parent)?;
        if !digest().is_subclass(class, allowed, here.version()) {
            let message = format!("@type {class} is not allowed here; expected @type {allowed}");
            match parent {
                // Reported on the parent whose property holds the element, as the reference
                // parser does.
                Some(parent) => self.bad_type(here, parent, message),
                None => self
                    .at(here.doc, &here.key("@type"))
                    .error("typeNotRootable", message),
            }
            return None;
        }
        digest().class(class)?;
        Some(Typing {
            class,
            cotypes: list.cotypes,
            undefined_cotype: list.undefined_cotype,
            ok: list.ok,
        })
    }

    /// Sorts one `@type` entry into a material class, a supplemental type or an undefined one.
    fn read_type(&mut self, here: &Here<'_>, t: &Value, list: &mut TypeList) {
        let (doc, version) = (here.doc, here.version());
        let pointer = here.key("@type");
        let Some(term) = t.as_str().filter(|s| !s.is_empty()) else {
            self.at(doc, &pointer).value(t).error(
                "ktwin:dtdl:typeNotString",
                "@type values must be non-empty strings",
            );
            list.ok = false;
            return;
        };
        let iri = resolve_iri(here.ctx, term);
        self.recommend_term(doc, &pointer, term, iri.as_deref(), here.ctx);
        let (case, code) = match iri {
            Some(iri) => {
                if let Some(class) = class_of_iri(&iri, version) {
                    if list.material.contains(&class) {
                        self.at(doc, &pointer).value(t).warning(
                            "ktwin:dtdl:duplicateType",
                            format!("@type lists {class} more than once"),
                        );
                    } else {
                        list.material.push(class);
                    }
                    return;
                }
                if digest().supplemental_types.contains_key(&iri) {
                    if list.cotypes.contains(&iri) {
                        self.at(doc, &pointer).value(t).warning(
                            "ktwin:dtdl:duplicateType",
                            format!("@type lists {term} more than once"),
                        );
                    } else {
                        list.cotypes.push(iri);
                    }
                    return;
                }
                ("irrelevantDtmiOrTermAsCotype", "typeIrrelevantDtmiOrTerm")
            }
            None if term.starts_with("dtmi:") => ("invalidDtmiAsCotype", "typeInvalidDtmi"),
            None if term.contains(':') => ("notDtmiNorTermAsCotype", "typeNotDtmiNorTerm"),
            None => ("undefinedTermAsCotype", "typeUndefinedTerm"),
        };
        match self.apocrypha(version, case) {
            Outcome::Valid => list.undefined_cotype = true,
            Outcome::Tenable if self.opts.allow_undefined_extensions => {
                list.undefined_cotype = true
            }
            _ => {
                self.at(doc, &pointer).value(t).error(
                    code,
                    format!("@type '{term}' is not a DTDL v{version} type or a type of an active extension"),
                );
                list.ok = false;
            }
        }
    }

    /// The material class written, implied by a supplemental type (units…), or the only one
    /// `allowed` here when the version lets `@type` be left out.
    fn material_class(
        &mut self,
        here: &Here<'_>,
        list: &TypeList,
        allowed: &str,
        parent: Option<ElemId>,
    ) -> Option<&'static str> {
        if let Some(class) = list.material.first() {
            return Some(class);
        }
        let digest = digest();
        let version = here.version();
        let implied = list.cotypes.iter().find_map(|c| {
            supplemental_chain(c)
                .last()
                .and_then(|(_, t)| t.parent.as_deref())
                .and_then(|p| class_of_iri(p, version))
        });
        let concrete = digest
            .class(allowed)?
            .concrete_subclasses
            .get(&version.to_string());
        let optional = concrete.filter(|c| c.len() == 1).and_then(|c| {
            let (k, class) = digest.material_classes.get_key_value(c.first()?)?;
            class
                .type_optional_versions
                .contains(&version)
                .then_some(k.as_str())
        });
        let untyped = here.obj.get("@type").is_none();
        match implied.or(optional) {
            Some(c) if untyped || implied.is_some() => Some(c),
            _ if untyped && parent.is_none() => {
                // A top-level element must say it is an Interface.
                let subject = self.subject.clone().unwrap_or_default();
                self.at(here.doc, here.pointer).error(
                    "typeNotRootable",
                    format!("element has no @type; a top-level element must be a {allowed}"),
                );
                let at = self.at(here.doc, here.pointer);
                let at = if subject.is_empty() {
                    at
                } else {
                    at.secondary(&subject)
                };
                at.error(
                    "badType",
                    format!("element has no @type; expected a {allowed} type"),
                );
                None
            }
            _ if untyped => {
                if let Some(parent) = parent {
                    let message = format!("element has no @type; expected a {allowed} type");
                    self.bad_type(here, parent, message);
                }
                None
            }
            _ => {
                if list.ok {
                    self.missing_material_type(here, allowed, parent);
                }
                None
            }
        }
    }

    /// `@type` lists only supplemental types: a nested element is then not of the class its
    /// parent's property needs (reported on the parent), a top-level one is not an Interface.
    fn missing_material_type(&mut self, here: &Here<'_>, allowed: &str, parent: Option<ElemId>) {
        let message = format!("@type specifies no material type; expected a {allowed} type");
        match parent {
            Some(parent) => self.bad_type(here, parent, message),
            None => self
                .at(here.doc, &here.key("@type"))
                .error("typeNotRootable", message),
        }
    }

    /// `badType`: the element is not of a class its parent's property allows; the parent is
    /// the primary element, the element the secondary one.
    fn bad_type(&mut self, here: &Here<'_>, parent: ElemId, message: String) {
        let parent_id = self.arena.elems[parent].id.clone();
        let subject = self.subject.clone().unwrap_or_default();
        let pointer = if here.obj.contains_key("@type") {
            here.key("@type")
        } else {
            here.pointer.to_string()
        };
        self.at(here.doc, &pointer)
            .primary(&parent_id)
            .secondary(&subject)
            .error("badType", message);
    }

    /// Placement, version and co-occurrence of the supplemental types.
    pub(super) fn check_cotypes(&mut self, here: &Here<'_>, typing: &Typing) {
        let (doc, version, class) = (here.doc, here.version(), typing.class);
        let pointer = here.key("@type");
        for c in &typing.cotypes {
            let Some((_, st)) = supplemental_chain(c).into_iter().next() else {
                continue;
            };
            if st.is_abstract {
                self.at(doc, &pointer).error(
                    "abstractSupplementalType",
                    format!("supplemental type {c} is abstract"),
                );
            }
            if !st.cotypes.is_empty()
                && !st
                    .cotypes
                    .iter()
                    .any(|allowed| digest().is_subclass(class, allowed, version))
            {
                self.at(doc, &pointer).error(
                    "invalidCotype",
                    format!(
                        "supplemental type {c} can only be applied to {}",
                        st.cotypes.join(", ")
                    ),
                );
            }
            if !st.cotype_versions.contains(&version) {
                self.at(doc, &pointer).error(
                    "invalidCotypeVersion",
                    format!("supplemental type {c} cannot be used in DTDL v{version}"),
                );
            }
            for needed in st.cocotypes.iter().filter(|n| !typing.cotypes.contains(n)) {
                self.at(doc, &pointer).error(
                    "missingCocotype",
                    format!("supplemental type {c} requires co-type {needed}"),
                );
            }
            for banned in st.discotypes.iter().filter(|b| typing.cotypes.contains(b)) {
                self.at(doc, &pointer).error(
                    "disallowedCocotype",
                    format!("supplemental type {c} cannot be combined with {banned}"),
                );
            }
        }
    }
}
