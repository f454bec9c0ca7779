"""tools/sass_mainloop.py's loop finder on hand-written disassembly: the loop with the most
tensor-core instructions, an outer loop counted whole, and a second main loop apart from the first
(a kernel with two pipelines) reported as `name#2`; and its reading of the build's fatbins (missing
or stale ones refused, registers from cuobjdump's resource page). Run by .ci/run with the other
tools' tests."""
import os
import pathlib
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import sass_mainloop  # noqa: E402


def function(name, lines):
    """A cuobjdump page of one function: `/*address*/ instruction ;` lines, 16 bytes apart."""
    body = "\n".join(f"        /*{16 * i:04x}*/                   {text} ;" for i, text in enumerate(lines))
    return f"\n\tFunction : {name}\n{body}\n"


class MainLoops(unittest.TestCase):
    def test_the_loop_with_the_most_hgmma_then_a_second_one_apart(self):
        sass = function("k", [
            "MOV R1, c[0x0][0x28]",
            "HGMMA.64x128x16.F32.BF16 R24, gdesc[UR4], R24",   # 0x20: loop A (long, 1 HGMMA)
            "IADD3 R2, R2, 0x1, RZ",
            "IADD3 R3, R3, 0x1, RZ",
            "ISETP.NE.AND P0, PT, R2, R4, PT",
            "@P0 BRA 0x10",
            "SYNCS.PHASECHK.TRANS64.TRYWAIT P0, [R10+URZ], R9",  # 0x60: loop B (short, 1 HGMMA)
            "HGMMA.64x128x16.F32.BF16 R24, gdesc[UR8], R24",
            "@P1 BRA 0x60",
            "HMMA.16816.F32.BF16 R4, R8, R12, R4",              # 0x90: a loop with none of its own
            "EXIT",
        ])
        loops = sass_mainloop.main_loops(sass)
        self.assertEqual(set(loops), {"k", "k#2"})
        self.assertEqual(len(loops["k"]), 5)
        self.assertEqual(loops["k#2"], ["SYNCS", "HGMMA", "BRA"])

    def test_an_outer_loop_counts_whole_and_a_retry_after_exit_is_no_loop(self):
        sass = function("k", [
            "MOV R1, c[0x0][0x28]",
            "S2R R0, SR_TID.X",                                # 0x10: outer loop
            "HGMMA.64x64x16.F32.BF16 R24, gdesc[UR4], R24",    # 0x20: inner loop
            "@P0 BRA 0x20",
            "IADD3 R2, R2, 0x1, RZ",
            "@P1 BRA 0x10",
            "EXIT",
            "SYNCS.PHASECHK.TRANS64.TRYWAIT P0, [R10+URZ], R9",
            "@!P0 BRA 0x20",                                   # a retry placed after EXIT
        ])
        loops = sass_mainloop.main_loops(sass)
        self.assertEqual(set(loops), {"k"})
        self.assertEqual(loops["k"], ["S2R", "HGMMA", "BRA", "IADD3", "BRA"])


class Fatbins(unittest.TestCase):
    """--fatbins: the build's fatbins read instead of compiled, never stale ones."""

    def test_a_missing_or_stale_fatbin_stops_the_tool(self):
        with tempfile.TemporaryDirectory() as tmp:
            folder = pathlib.Path(tmp)
            with self.assertRaises(SystemExit) as missing:
                sass_mainloop.disassemble_fatbin(folder, folder, "conv_tc_forward.cu", "sm_90")
            self.assertIn("no ", str(missing.exception))
            fatbin = folder / "conv_tc_forward.fatbin"
            fatbin.write_bytes(b"")
            os.utime(fatbin, (0, 0))  # older than every file under kernels/
            with self.assertRaises(SystemExit) as stale:
                sass_mainloop.disassemble_fatbin(folder, folder, "conv_tc_forward.cu", "sm_90")
            self.assertIn("is older than kernels/", str(stale.exception))

    def test_registers_from_a_resource_usage_page(self):
        page = (
            "Resource usage:\n Common:\n  GLOBAL:0\n"
            " Function conv2d_a_bf16:\n  REG:71 STACK:0 SHARED:1024 LOCAL:0 CONSTANT[0]:636\n"
            " Function conv2d_b_bf16:\n  REG:168 STACK:0 SHARED:0 LOCAL:0 CONSTANT[0]:1100\n"
        )
        self.assertEqual(sass_mainloop.res_usage_registers(page), {"conv2d_a_bf16": 71, "conv2d_b_bf16": 168})


if __name__ == "__main__":
    unittest.main()
