//! One rule per catalogue class: plain functions from facts to a diagnosis.
//!
//! IMPLEMENTATION PENDING (helper).
