//! apache2/httpd configuration parser.
//!
//! IMPLEMENTATION PENDING (helper).
