"""The tiny suite the tests train (seconds): 160 training images of 48 px, one epoch."""

TINY_DATA = """[data]
n_train = 160
n_val = 40
n_shifted = 20
n_counterfactual = 20
"""


def tiny_suite(
    name: str = "tiny",
    methods: tuple[str, ...] = ("gradcam", "gain_ext"),
    *,
    timing: bool = True,
    reference: bool = False,
    seeds: tuple[int, ...] = (0, 1),
    budgets: tuple[int, ...] = (9,),
    seed_scope: str = "train",
) -> str:
    """TOML text of a tiny suite: two seeds and budget 9 unless given, the given methods (GAIN's warm-up off so L_am
    runs); the unbiased attention reference (a pre-training run) only when asked for."""
    blocks = "".join(f"[methods.{m}]\n" + ("warmup_epochs = 0\n" if m in ("gain", "gain_ext") else "") for m in methods)
    timing_block = "batch_size = 8\nwarmup = 0\niterations = 1\n" if timing else "enabled = false\n"
    return f"""name = "{name}"
seeds = {list(seeds)}
budgets = {list(budgets)}
seed_scope = "{seed_scope}"
unbiased_reference = {"true" if reference else "false"}
{TINY_DATA}[train]
epochs = 1
batch_size = 32
{blocks}[timing]
{timing_block}"""
