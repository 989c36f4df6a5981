#!/usr/bin/env python3
"""Writes Tests/Fixtures/chat_templates.json: public chat templates (Llama 2, Llama 3, Qwen2, Qwen2.5,
Mistral v0.1 and v0.3) and transformers' `apply_chat_template` renderings of a few conversations,
the reference for BanyanBatch's Jinja renderer.

    python3 scripts/make_chat_template_fixtures.py   # needs transformers (tested with 5.x)
"""
import json
import pathlib

from transformers import PreTrainedTokenizerFast

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOKENIZER = ROOT.parent / "shared" / "tokenizers" / "qwen2" / "tokenizer.json"

LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'system' %}{{ '<<SYS>>\\n' + content.strip() + '\\n<</SYS>>\\n\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

QWEN2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

QWEN25 = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

MISTRAL = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

MISTRAL_V3 = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.last and system_message is defined %}
            {{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}
        {%- else %}
            {{- '[INST] ' + message['content'] + '[/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content']|trim + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""

# A template exercising the rest of the subset: trim_blocks/lstrip_blocks layout, namespace, ~, filters,
# tests, slices, conditional expressions, loop variables, break/continue.
KITCHEN_SINK = """{% set ns = namespace(count=0, last_role='') %}
{% for m in messages %}
    {% if m.role == 'system' %}{% continue %}{% endif %}
    {% set ns.count = ns.count + 1 %}
    {% set ns.last_role = m.role %}
    <{{ loop.index }}/{{ loop.length }} {{ m.role | upper }}{{ '*' if loop.last else '' }}> {{ m['content'] | trim ~ '|' ~ (m.content | length) }}
    {% if m.name is defined %}name={{ m.name }}{% elif m.role == 'assistant' and not loop.first %}(reply){% else %}-{% endif %}

    {% if ns.count >= 3 %}{% break %}{% endif %}
{% endfor %}
{#- a comment -#}
count={{ ns.count }} last={{ ns.last_role }} first={{ (messages | first)['role'] }} tail={{ messages[-1:] | length }} {{ 7 // 2 }}{{ 7 % 3 }}{{ -3 // 2 }} {{ 'x' in 'xyz' }} {{ 'q' not in ['a'] }}
{{- ' ' + messages[0].content.upper()[:3] }}{{ [1, 2] | join(',') }} {{ {'a': 1, 'b': [true, none, 'x']} | tojson }} {{ messages[0].content.split(' ') | length }}
{%- if add_generation_prompt %}
ASSISTANT:
{%- endif %}"""

TEMPLATES = [
    ("llama2", LLAMA2, "<s>", "</s>"),
    ("llama3", LLAMA3, "<|begin_of_text|>", "<|eot_id|>"),
    ("qwen2", QWEN2, "", "<|im_end|>"),
    ("qwen2.5", QWEN25, "", "<|im_end|>"),
    ("mistral", MISTRAL, "<s>", "</s>"),
    ("mistral-v0.3", MISTRAL_V3, "<s>", "</s>"),
    ("kitchen-sink", KITCHEN_SINK, "<s>", "</s>"),
]

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "  What is 2+2?  "}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " Hello, how can I help? "},
     {"role": "user", "content": "Tell me a joke.\nMake it short."}],
    [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "One"}, {"role": "assistant", "content": "Two"},
     {"role": "user", "content": "Three", "name": "carol"}],
    [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    [{"role": "assistant", "content": "I start."}],
    [{"role": "user", "content": "Unicode: héllo 世界 🙂 'quotes' \"double\" \\ backslash"}],
]


def main():
    cases_out = []
    for name, template, bos, eos in TEMPLATES:
        tok = PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER), chat_template=template, bos_token=bos or None, eos_token=eos)
        if not bos:
            tok.bos_token = None
        cases = []
        for messages in CONVERSATIONS:
            for gen in (True, False):
                case = {"messages": messages, "add_generation_prompt": gen}
                try:
                    case["expected"] = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
                except Exception as e:  # raise_exception in the template
                    case["error"] = str(e)
                cases.append(case)
        cases_out.append({"name": name, "template": template, "bos_token": bos, "eos_token": eos, "cases": cases})
    out = ROOT / "Tests" / "Fixtures" / "chat_templates.json"
    out.write_text(json.dumps(cases_out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}: {sum(len(t['cases']) for t in cases_out)} cases")


if __name__ == "__main__":
    main()
