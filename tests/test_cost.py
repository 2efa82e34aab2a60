"""Prices: genai-prices' figures, the config's own prices, and a reason wherever there is no figure."""

import datetime

import genai_prices
import pytest

from kimi_core.config import Config
from kimi_core.cost import OwnPrice, Prices, Usage


def reference(model, provider_id, **usage):
    return float(genai_prices.calc_price(genai_prices.Usage(**usage), model, provider_id=provider_id).total_price)


@pytest.mark.parametrize("provider,model,provider_id,ref", [
    ("openai", "gpt-4.1", "openai", "gpt-4.1"),
    ("anthropic", "claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5"),
    ("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "aws", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ("vertex-ai", "claude-sonnet-4-5@20250929", "google", "claude-sonnet-4-5-20250929"),
    ("gemini", "gemini-2.5-pro", "google", "gemini-2.5-pro"),
    ("openrouter", "anthropic/claude-sonnet-4.5", "openrouter", "anthropic/claude-sonnet-4.5"),
    ("moonshot", "kimi-k2-0905-preview", "moonshotai", "kimi-k2-0905-preview"),
])
def test_a_call_is_priced_at_the_provider_that_served_it(provider, model, provider_id, ref):
    found = Prices().price(provider, model, Usage(12_000, 800, cache_read=2_000))
    assert found.usd == pytest.approx(reference(ref, provider_id, input_tokens=12_000, output_tokens=800,
                                                cache_read_tokens=2_000), rel=1e-9)
    assert found.usd > 0 and found.note is None and found.input_usd_per_token > 0


def test_a_subscription_is_priced_at_the_api_rates_and_says_so():
    found = Prices().price("chatgpt", "gpt-4.1", Usage(1000, 10))
    assert found.usd == pytest.approx(reference("gpt-4.1", "openai", input_tokens=1000, output_tokens=10))
    assert found.note == "chatgpt is a subscription: priced at openai's API rates"


def test_prices_change_with_the_date_of_the_call():
    prices = Prices()
    early = prices.price("anthropic", "claude-sonnet-4-5", Usage(10_000, 100),
                         datetime.datetime(2025, 10, 1, tzinfo=datetime.UTC))
    assert early.usd == pytest.approx(float(genai_prices.calc_price(
        genai_prices.Usage(input_tokens=10_000, output_tokens=100), "claude-sonnet-4-5", provider_id="anthropic",
        genai_request_timestamp=datetime.datetime(2025, 10, 1, tzinfo=datetime.UTC)).total_price))


def test_an_unknown_model_has_no_price_and_the_note_says_how_to_add_one():
    found = Prices().price("nvidia", "some/new-model", Usage(1000, 10))
    assert found.usd is None
    assert found.note == 'no price known for some/new-model (nvidia); add one under [models."some/new-model"] in the config'
    assert Prices().price("openai", None, Usage(1)).note == "no model named"


def test_the_config_can_price_a_model_and_wins():
    config = Config.model_validate({"models": {"my-local": {"input_per_mtok": 1.0, "output_per_mtok": 4.0,
                                                            "cache_read_per_mtok": 0.1},
                                               "gpt-4.1": {"input_per_mtok": 0.0}}})
    prices = Prices(config.prices())
    mine = prices.price("mylab", "my-local", Usage(1_000_000, 500_000, cache_read=400_000))
    assert mine.usd == pytest.approx(0.6 + 0.04 + 2.0) and mine.note == "price from the config"
    assert prices.price("openai", "gpt-4.1", Usage(1000, 0)).usd == 0.0
    assert OwnPrice(2.0).cost(Usage(1000, 1000, cache_write=500)) == pytest.approx(0.002)


def test_a_price_needs_its_input_rate():
    from kimi_core.config import ModelConfig
    with pytest.raises(ValueError, match="a price needs input_per_mtok"):
        ModelConfig(output_per_mtok=2.0)
