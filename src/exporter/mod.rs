//! Exporters firedrill serves from its own image in place of an official
//! one that cannot run here, with the official one's names, labels and
//! semantics, from real measurements: cAdvisor's container metrics read
//! through the Docker API.

pub mod cadvisor;
