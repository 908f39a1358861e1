//! `CODACY_FORWARDER__SECTION__KEY` overrides: which variable set which key (so an error names
//! the variable, not the file), and scalar values checked exactly rather than coerced.

use super::{ConfigError, ENV_PREFIX};

/// One `CODACY_FORWARDER__SECTION__KEY` variable and the key it sets (`section.key`).
#[derive(Debug, Clone)]
pub(super) struct EnvOverride {
    pub(super) variable: String,
    pub(super) key: String,
}

/// The override variables, read the way the `config` crate reads them (case-insensitive
/// prefix, `__` between section and key, empty values count).
pub(super) fn env_overrides() -> Vec<EnvOverride> {
    let prefix = format!("{ENV_PREFIX}__").to_lowercase();
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter_map(|variable| {
            let lower = variable.to_lowercase();
            let rest = lower.strip_prefix(&prefix)?;
            Some(EnvOverride {
                key: rest.replace("__", "."),
                variable,
            })
        })
        .collect()
}

/// Re-attributes an error about a key an environment variable set to that variable: the file
/// is not where the bad value is.
pub(super) fn blame_environment(mut e: ConfigError, overrides: &[EnvOverride]) -> ConfigError {
    let culprit = overrides.iter().find(|o| {
        o.key == e.key
            || (!e.key.is_empty() && o.key.starts_with(&format!("{}.", e.key)) && {
                // An unknown key inside a section: the message quotes the unknown name.
                let last = o.key.rsplit('.').next().unwrap_or_default();
                e.message.contains(&format!("`{last}`"))
            })
            || (e.key.is_empty() && e.message.contains(&o.key))
    });
    if let Some(o) = culprit {
        e.variable = Some(Box::new(super::EnvOrigin {
            variable: o.variable.clone(),
            key: o.key.clone(),
        }));
    }
    e
}

#[derive(Clone, Copy)]
enum Scalar {
    WholeNumber,
    Number,
    Bool,
}

/// Keys of the typed sections whose values the `config` crate would otherwise coerce: a file
/// saying `page_limit = "100"` or `100.5` is a mistake to name, not to round. Environment
/// variables are always text, so there the text must parse exactly.
const SCALAR_KEYS: &[(&str, Scalar)] = &[
    ("codacy.page_limit", Scalar::WholeNumber),
    ("codacy.max_attempts", Scalar::WholeNumber),
    ("codacy.max_concurrent_requests", Scalar::WholeNumber),
    ("codacy.max_response_bytes", Scalar::WholeNumber),
    ("codacy.max_requests_per_second", Scalar::Number),
    ("codacy.allow_insecure_http", Scalar::Bool),
    ("agent.max_events_in_memory", Scalar::WholeNumber),
    ("telemetry.health_stale_intervals", Scalar::WholeNumber),
];

pub(super) fn check_scalar_types(
    built: &config::Config,
    overrides: &[EnvOverride],
) -> Result<(), (String, String)> {
    use config::ValueKind as K;
    for (key, want) in SCALAR_KEYS {
        let Ok(value) = built.get::<config::Value>(key) else {
            continue;
        };
        let from_env = overrides.iter().any(|o| o.key == *key);
        let name = key.rsplit('.').next().unwrap_or(key);
        let problem = match (&value.kind, want) {
            (K::I64(n), Scalar::WholeNumber) if *n >= 0 => None,
            (K::I64(_) | K::I128(_), Scalar::WholeNumber) => Some(format!(
                "{value} is negative; write a whole number such as {name} = 100"
            )),
            (K::U64(_) | K::U128(_), Scalar::WholeNumber) => None,
            (K::I64(_) | K::I128(_) | K::U64(_) | K::U128(_) | K::Float(_), Scalar::Number) => None,
            (K::Boolean(_), Scalar::Bool) => None,
            (K::String(s), Scalar::WholeNumber) if from_env => s
                .trim()
                .parse::<u64>()
                .is_err()
                .then(|| format!("{s:?} is not a whole number")),
            (K::String(s), Scalar::Number) if from_env => s
                .trim()
                .parse::<f64>()
                .is_err()
                .then(|| format!("{s:?} is not a number")),
            (K::String(s), Scalar::Bool) if from_env => (!matches!(s.trim(), "true" | "false"))
                .then(|| format!("{s:?} is neither true nor false")),
            (K::String(s), _) => Some(format!(
                "{s:?} is text; write the value without quotes, e.g. {name} = {}",
                match want {
                    Scalar::Bool => "true",
                    _ => "100",
                }
            )),
            (K::Float(f), Scalar::WholeNumber) => Some(format!(
                "{f} is not a whole number; write e.g. {name} = {}",
                f.trunc().max(1.0)
            )),
            (other, Scalar::Bool) => Some(format!("must be true or false, found {other:?}")),
            (other, _) => Some(format!("must be a number, found {other:?}")),
        };
        if let Some(p) = problem {
            return Err((key.to_string(), p));
        }
    }
    Ok(())
}
