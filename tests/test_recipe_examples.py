"""The recipe files shipped under examples/recipes/ load and mean what their comments say."""

from pathlib import Path

from metaae_edge.tasks.recipes import create_recipe, load_recipe_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "recipes"


def test_codec_recipe_equals_the_flags_of_the_builtin_build():
    fields = load_recipe_file(EXAMPLES / "digits-res-codec.toml")
    got = create_recipe(fields.pop("family"), **fields)
    want = create_recipe("digits-res", dense_latents=(8, 16, 32, 64), linear_bypass=True,
                         seed=0)
    assert got == want
    assert got != create_recipe("digits-res")  # the file does change the default recipe
