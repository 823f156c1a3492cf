"""Provider names as instrumentations write them -> the price catalog's provider ids.

The OTel GenAI conventions (``gen_ai.provider.name``, the deprecated ``gen_ai.system``),
OpenInference (``llm.provider``, ``llm.system``), OpenLLMetry and OpenLIT each spell providers
their own way (``aws.bedrock``, ``mistral_ai``, ``x_ai``, ``vertexai``, ``Anthropic``). The
receiver stores the catalog's id so that one provider is one group in every rollup, and the
pricing stage looks names up through the same table so that SDK spans sending a convention's
spelling are priced too. It lives in the core because both stages need it.

Targets are genai-prices provider ids (``streams/pricing/snapshot.py`` bundles that catalog).
``ibm.watsonx.ai`` has no provider there and is left as written, as is any name not listed.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

#: Lower-cased convention spelling -> catalog provider id.
PROVIDER_ALIASES: Final = MappingProxyType(
    {
        # OTel GenAI gen_ai.provider.name values, and the deprecated gen_ai.system ones
        "openai": "openai",
        "anthropic": "anthropic",
        "aws.bedrock": "aws",
        "azure.ai.inference": "azure",
        "azure.ai.openai": "azure",
        "az.ai.inference": "azure",
        "az.ai.openai": "azure",
        "gcp.gen_ai": "google",
        "gcp.vertex_ai": "google",
        "gcp.gemini": "google",
        "vertex_ai": "google",
        "gemini": "google",
        "cohere": "cohere",
        "deepseek": "deepseek",
        "groq": "groq",
        "mistral_ai": "mistral",
        "perplexity": "perplexity",
        "x_ai": "x-ai",
        # OpenInference llm.provider / llm.system values not listed above
        "google": "google",
        "azure": "azure",
        "aws": "aws",
        "mistralai": "mistral",
        "xai": "x-ai",
        "vertexai": "google",
        "fireworks": "fireworks",
        "moonshot": "moonshotai",
        "cerebras": "cerebras",
        # OpenLLMetry's gen_ai.system spellings ("Bedrock", "Mistral"; case is folded)
        "bedrock": "aws",
        "mistral": "mistral",
    }
)


def catalog_provider(name: str) -> str:
    """The catalog's id for a provider name, or the name unchanged when no alias is known."""
    return PROVIDER_ALIASES.get(name.strip().lower(), name)
