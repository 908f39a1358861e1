//! What the three HTTP sinks' configurations have in common towards the registry: each
//! implements [`HttpConfig`], and [`SinkConfig`] follows from it (secrets for the redactor,
//! the clear-text warning, equality), so that glue is written once.

use super::auth::Auth;
use super::endpoint::{parse_table, Endpoint};
use crate::config::FieldError;
use crate::format::Format;
use crate::secret::{Redactor, SecretSource};
use crate::sink::registry::{SinkCommon, SinkConfig, SinkType};
use crate::sink::{Sink, SinkContext, SinkError};
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// An HTTP sink's configuration.
pub trait HttpConfig: fmt::Debug + PartialEq + Send + Sync + 'static {
    /// The formats the destination takes (default: json, ecs, cef).
    fn record_formats(&self) -> &'static [Format] {
        &[Format::Json, Format::Ecs, Format::Cef]
    }

    fn endpoint(&self) -> &Endpoint;

    fn endpoint_mut(&mut self) -> &mut Endpoint;

    /// Where the credentials come from (not read yet).
    fn credentials(&self) -> Result<Auth<SecretSource>, FieldError>;

    /// The checks of [`SinkConfig::validate`].
    fn check(&self, common: &mut SinkCommon) -> Result<(), FieldError>;

    /// Opens the sink: reads the secrets and builds the client.
    fn open(&self, ctx: SinkContext) -> Result<Arc<dyn Sink>, SinkError>;
}

#[async_trait]
impl<T: HttpConfig> SinkConfig for T {
    fn formats(&self) -> &'static [Format] {
        self.record_formats()
    }

    fn validate(&self, common: &mut SinkCommon) -> Result<(), FieldError> {
        self.check(common)
    }

    /// The credentials this sink sends (none when they cannot be read: then nothing is sent).
    fn redactor(&self) -> Redactor {
        let auth = self.credentials().and_then(|a| a.read());
        auth.map(|a| a.redactor()).unwrap_or_default()
    }

    fn cleartext_url(&self) -> Option<String> {
        self.endpoint().cleartext_url()
    }

    async fn build(&self, ctx: SinkContext) -> Result<Arc<dyn Sink>, SinkError> {
        self.open(ctx)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The registry entry of an HTTP sink type whose configuration is `T`.
pub const fn sink_type<T: HttpConfig + DeserializeOwned>(
    name: &'static str,
    carries_host: bool,
) -> SinkType {
    SinkType {
        name,
        carries_host,
        parse: |table, _| Ok(Box::new(from_json::<T>(table.into())?)),
    }
}

/// Parses an HTTP sink's table: the shared keys into its [`Endpoint`], the rest into `T`'s
/// own keys (which refuse keys they do not know).
pub fn from_json<T: HttpConfig + DeserializeOwned>(table: Value) -> Result<T, FieldError> {
    let (endpoint, mut config) = parse_table::<T>(table)?;
    *config.endpoint_mut() = endpoint;
    Ok(config)
}
