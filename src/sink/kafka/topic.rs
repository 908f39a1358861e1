//! The `topic` key: a Kafka topic name with `{provider}` and `{organization}` placeholders,
//! checked once at start and rendered per record.

use crate::event::OrgRef;

/// Kafka's limit on a topic name's length.
const MAX_TOPIC_LEN: usize = 249;

/// One piece of a topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Provider,
    Organization,
}

/// A topic name with `{provider}` and `{organization}` placeholders, rendered per record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicTemplate {
    parts: Vec<Part>,
}

/// Kafka topic names allow only these characters.
fn topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-'
}

/// Names Kafka refuses whatever their characters.
fn invalid_name(name: &str) -> bool {
    name.is_empty() || name == "." || name == ".." || name.len() > MAX_TOPIC_LEN
}

impl TopicTemplate {
    pub(crate) fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = template;
        while let Some(c) = rest.chars().next() {
            match c {
                '{' => {
                    let end = rest.find('}').ok_or_else(|| {
                        format!("{template:?}: `{{` without a closing `}}`; placeholders are {{provider}} and {{organization}}")
                    })?;
                    let part = placeholder(template, &rest[1..end])?;
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                    rest = &rest[end + 1..];
                }
                '}' => {
                    return Err(format!(
                        "{template:?}: `}}` without an opening `{{`; placeholders are {{provider}} and {{organization}}"
                    ))
                }
                c if topic_char(c) => {
                    literal.push(c);
                    rest = &rest[c.len_utf8()..];
                }
                c => {
                    return Err(format!(
                        "{template:?}: {c:?} cannot be part of a Kafka topic name (use letters, digits, '.', '_' and '-')"
                    ))
                }
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        let t = TopicTemplate { parts };
        match t.fixed() {
            Some("") => Err("must not be empty".to_string()),
            Some(name) if name.len() > MAX_TOPIC_LEN => Err(format!(
                "{template:?} is longer than Kafka's {MAX_TOPIC_LEN} characters"
            )),
            Some(name) if invalid_name(name) => {
                Err(format!("{template:?} is not a valid Kafka topic name"))
            }
            _ => Ok(t),
        }
    }

    /// The topic name when the template has no placeholder.
    pub(crate) fn fixed(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// The topic for one organization's records. Characters Kafka does not allow in topic names
    /// become `_` (organization names may contain them).
    pub(crate) fn render(&self, org: &OrgRef) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Provider => out.push_str(org.provider.as_str()),
                Part::Organization => {
                    out.extend(
                        org.name
                            .chars()
                            .map(|c| if topic_char(c) { c } else { '_' }),
                    )
                }
            }
        }
        if invalid_name(&out) {
            return Err(format!(
                "topic {out:?} for organization {org} is not a valid Kafka topic name (at most {MAX_TOPIC_LEN} characters of letters, digits, '.', '_', '-'); change `topic`"
            ));
        }
        Ok(out)
    }
}

/// The part a `{name}` placeholder of `template` stands for.
fn placeholder(template: &str, name: &str) -> Result<Part, String> {
    match name {
        "provider" => Ok(Part::Provider),
        "organization" => Ok(Part::Organization),
        other => Err(format!(
            "{template:?}: unknown placeholder {{{other}}}; use {{provider}} or {{organization}}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Provider;

    #[test]
    fn topic_templates_render_per_organization() {
        let org = OrgRef::new(Provider::Gl, "acme.corp");
        let t = TopicTemplate::parse("audit-{provider}-{organization}").unwrap();
        assert_eq!(t.fixed(), None);
        assert_eq!(t.render(&org).unwrap(), "audit-gl-acme.corp");
        let t = TopicTemplate::parse("{organization}").unwrap();
        assert_eq!(
            t.render(&OrgRef::new(Provider::Gh, "Acme Corp/é")).unwrap(),
            "Acme_Corp__"
        );
        let t = TopicTemplate::parse("codacy-audit").unwrap();
        assert_eq!(t.fixed(), Some("codacy-audit"));
        assert_eq!(t.render(&org).unwrap(), "codacy-audit");
        let long = TopicTemplate::parse(&format!("{}-{{organization}}", "a".repeat(240))).unwrap();
        let e = long
            .render(&OrgRef::new(Provider::Gh, "x".repeat(20)))
            .unwrap_err();
        assert!(e.contains("not a valid Kafka topic name"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn rendered_topics_are_always_valid_kafka_names(name in "\\PC{1,40}", p in 0usize..6) {
            let org = OrgRef::new(Provider::ALL[p], name);
            let t = TopicTemplate::parse("a.{provider}_{organization}").unwrap();
            let topic = t.render(&org).unwrap();
            proptest::prop_assert!(topic.chars().all(topic_char));
            proptest::prop_assert!(topic.starts_with("a."));
        }
    }
}
