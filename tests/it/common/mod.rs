pub mod data_gen;
pub mod layout;
pub mod runs;
