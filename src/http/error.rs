//! HTTP errors: a status and the `msg` of the JSON body. The mapping of a
//! [`QueueError`] to IronMQ's status codes and messages is made here and only here.

use hyper::StatusCode;

use crate::error::QueueError;
use crate::queue::handle::UpdateError;

/// A failed request.
#[derive(Debug)]
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) msg: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        ApiError {
            status,
            msg: msg.into(),
        }
    }

    /// A 400 Bad Request.
    pub(super) fn bad(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, msg)
    }
}

impl From<QueueError> for ApiError {
    fn from(err: QueueError) -> Self {
        let (status, msg) = match &err {
            QueueError::InvalidArgument(reason) => (StatusCode::BAD_REQUEST, reason.clone()),
            QueueError::QueueNotFound(_) => (StatusCode::NOT_FOUND, "Queue not found".into()),
            QueueError::QueueExists(_) => (StatusCode::BAD_REQUEST, err.to_string()),
            QueueError::MessageNotFound(_) => (StatusCode::NOT_FOUND, "Message not found".into()),
            QueueError::ReservationExpired(_) => {
                (StatusCode::FORBIDDEN, "Reservation timed out".into())
            }
            QueueError::ReservationMismatch(_) => (
                StatusCode::FORBIDDEN,
                "Reservation id is missing, wrong or superseded".into(),
            ),
            QueueError::BodyTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Message body too large".into(),
            ),
            QueueError::ResourceExhausted(_) | QueueError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, err.to_string())
            }
            // IronMQ answers 401 for a token that does not cover the project.
            QueueError::PermissionDenied(_) => (StatusCode::UNAUTHORIZED, "Unauthorized".into()),
            QueueError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
        };
        ApiError { status, msg }
    }
}

impl From<UpdateError<ApiError>> for ApiError {
    fn from(err: UpdateError<ApiError>) -> Self {
        match err {
            UpdateError::Queue(err) => err.into(),
            UpdateError::Rejected(err) => err,
        }
    }
}
