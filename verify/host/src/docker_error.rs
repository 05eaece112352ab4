//! Docker API errors decided by their HTTP status, never by their text.

/// The HTTP status of a Docker API error answer, `None` when the error is not an answer of the
/// daemon (connection, decoding).
pub fn status(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The daemon answered 404: the object does not exist.
pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    status(e) == Some(404)
}

/// The daemon answered 409: the object is in use (a volume mounted by a container, an image
/// a container uses).
pub fn is_conflict(e: &bollard::errors::Error) -> bool {
    status(e) == Some(409)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: u16, message: &str) -> bollard::errors::Error {
        bollard::errors::Error::DockerResponseServerError {
            status_code: code,
            message: message.into(),
        }
    }

    #[test]
    fn decided_by_status_not_text() {
        assert!(is_not_found(&answer(404, "No such image: x")));
        // a message that says "not found" under another status is not a 404
        assert!(!is_not_found(&answer(500, "plugin not found")));
        assert!(is_conflict(&answer(409, "volume is in use")));
        assert!(!is_conflict(&answer(404, "in use")));
        assert_eq!(status(&bollard::errors::Error::RequestTimeoutError), None);
    }
}
