//! nginx configuration parser.
//!
//! IMPLEMENTATION PENDING (helper).
