pub mod emu;
