"""tools/ncu_table.py on hand-written pages in Nsight Compute's CSV formats (tests/fixtures/ncu/):
units converted, ncu's messages skipped, stalls ranked without `selected`, missing metrics shown as
"–". Run by .ci/run: python3 -m unittest discover -s tools -p 'test_*.py'."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import ncu_table  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "ncu")


class RawPage(unittest.TestCase):
    def setUp(self):
        header, units, rows = ncu_table.read_raw_page(os.path.join(FIXTURES, "raw_page.csv"))
        self.kernels = {k["kernel"]: k for k in ncu_table.kernel_rows(header, units, rows)}

    def test_every_kernel_row_is_read_and_messages_skipped(self):
        self.assertEqual(set(self.kernels), {"conv2d_tc_forward_stats_128x128_bf16", "batch_norm_finalize_tiles_f32"})

    def test_duration_in_microseconds_with_thousands_separators(self):
        self.assertAlmostEqual(self.kernels["conv2d_tc_forward_stats_128x128_bf16"]["us"], 1234.56)

    def test_tensor_pipe_is_the_largest_collected_and_na_is_skipped(self):
        self.assertAlmostEqual(self.kernels["conv2d_tc_forward_stats_128x128_bf16"]["tensor"], 62.5)
        self.assertAlmostEqual(self.kernels["batch_norm_finalize_tiles_f32"]["tensor"], 0.0)

    def test_stalls_ranked_without_selected_and_zeros(self):
        conv = self.kernels["conv2d_tc_forward_stats_128x128_bf16"]["stalls"]
        self.assertEqual([r for _, r in conv], ["mio_throttle", "barrier", "wait"])
        finalize = self.kernels["batch_norm_finalize_tiles_f32"]["stalls"]
        self.assertEqual([r for _, r in finalize], ["long_scoreboard", "wait"])

    def test_bank_conflicts_per_wavefront_and_none_without_loads(self):
        self.assertAlmostEqual(self.kernels["conv2d_tc_forward_stats_128x128_bf16"]["conflicts"], 1024 / 16384)
        self.assertIsNone(self.kernels["batch_norm_finalize_tiles_f32"]["conflicts"])

    def test_table_sorts_by_duration(self):
        text = ncu_table.table(os.path.join(FIXTURES, "raw_page.csv"), 0)
        self.assertLess(text.index("conv2d_tc_forward_stats"), text.index("batch_norm_finalize"))
        self.assertIn("2 profiled launches, 1.238 ms", text)


class SourcePage(unittest.TestCase):
    def test_instructions_ranked_by_stall_samples(self):
        text = ncu_table.hot_instructions(os.path.join(FIXTURES, "source_page.csv"), 0)
        lines = [line for line in text.splitlines() if line.startswith("| ") and "%" in line.split("|")[1]]
        self.assertTrue(lines[0].startswith("| 58.0% |") and "BAR.SYNC" in lines[0])
        self.assertIn("HMMA", lines[1])
        self.assertIn("3 instructions, 1000 samples", text)

    def test_a_file_without_a_source_page_says_so(self):
        text = ncu_table.hot_instructions(os.path.join(FIXTURES, "raw_page.csv"), 0)
        self.assertIn("no source page found", text)


if __name__ == "__main__":
    unittest.main()
