pub mod data_gen;
