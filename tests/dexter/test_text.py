import torch

from dexter.optimize import DexterConfig
from dexter.text import (
    MULTI_TEMPLATE,
    SINGLE_TEMPLATE,
    clip_text_forward,
    encode_prompts,
    gumbel_straight_through,
    tokenize_template,
)


def test_explicit_clip_path_is_bit_exact(sd):
    tok, enc = sd.tokenizer, sd.text_encoder
    ids = tok(["a picture of a red circle on water.", "a square"], padding="max_length", max_length=77,
              return_tensors="pt").input_ids
    with torch.no_grad():
        ref = enc(ids).last_hidden_state
        mine = clip_text_forward(enc, enc.embeddings.token_embedding(ids))
    assert torch.equal(ref, mine)


def test_spliced_one_hot_path_equals_tokenised_prompt(build_models, sd):
    for mode, words in [("single", ["water"]), ("multi", ["circle", "red", "land", "square", "of", "water"])]:
        models = build_models(DexterConfig(mode=mode))
        text = models.text
        bert_ids = text.bert_tokenizer.convert_tokens_to_ids(words)
        onehots = torch.nn.functional.one_hot(torch.tensor([bert_ids]), text.vocab_size).float()
        with torch.no_grad():
            spliced = text.clip_states(onehots)
            tokenised = encode_prompts(sd.text_encoder, sd.tokenizer, [text.tokens.fill(words)])
        assert torch.equal(spliced, tokenised), mode


def test_template_tokens(bert, sd):
    t = tokenize_template(MULTI_TEMPLATE, bert[1], sd.tokenizer)
    assert t.num_masks == 6
    assert (t.bert_ids[t.bert_mask_positions] == bert[1].mask_token_id).all()
    assert len(t.clip_ids) == 77
    assert t.fill(["sea", None, "a", "b", "c", "d"]).startswith("a picture of a sea with [MASK] and a")
    s = tokenize_template(SINGLE_TEMPLATE, bert[1], sd.tokenizer)
    assert s.clip_slot_positions.tolist() == [5]  # BOS a picture of a [slot] . EOS


def test_gumbel_straight_through_forward_hard_backward_soft():
    logits = torch.randn(2, 3, 11, requires_grad=True)
    gens = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    out = gumbel_straight_through(logits, gens)
    assert torch.equal(out.sum(-1), torch.ones(2, 3)) and set(out.unique().tolist()) <= {0.0, 1.0}
    (out * torch.arange(11.0)).sum().backward()
    assert logits.grad.abs().sum() > 0
    again = gumbel_straight_through(logits, [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)])
    assert torch.equal(out, again)
