//! Who may call: [`Authenticated`] for any logged-in user, [`Admin`] for admins.
//! Listed first among a handler's parameters, they run before the path and body
//! are looked at, so a bad token answers 401 whatever the ids.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::{header, request::Parts};
use regente_core::Role;

use super::error::ApiError;
use crate::service::{self, auth, Caller, Context};

pub struct Authenticated(pub Caller);

pub struct Admin(pub Caller);

impl FromRequestParts<Arc<Context>> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Arc<Context>) -> Result<Self, ApiError> {
        let authorization = match parts.headers.get(header::AUTHORIZATION) {
            Some(value) => Some(value.to_str().map_err(|_| {
                ApiError(service::Error::Unauthorized(
                    "the Authorization header is not valid text".into(),
                ))
            })?),
            None => None,
        };
        let mut caller = auth::authenticate(ctx, authorization).await?;
        caller.address = client_address(parts);
        Ok(Authenticated(caller))
    }
}

/// The address of the client the connection came from, as the login throttle
/// sees it (the server trusts no forwarding header).
pub(crate) fn client_address(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(client)| client.ip())
}

impl FromRequestParts<Arc<Context>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Arc<Context>) -> Result<Self, ApiError> {
        let Authenticated(caller) = Authenticated::from_request_parts(parts, ctx).await?;
        if caller.role != Role::Admin {
            return Err(ApiError(service::Error::Forbidden(
                "this route is for admins; your user has the integration role".into(),
            )));
        }
        Ok(Admin(caller))
    }
}
