"""The UI's look, offline: system font stacks only (Gradio's default theme pulls Inter and
IBM Plex Mono from Google Fonts, which an offline node cannot reach), the spec's colours
(svc-emergency-ui §2.6) as CSS variables, and a layout that stays usable at phone width."""
from __future__ import annotations

import gradio as gr

SANS = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "Noto Sans", "sans-serif"]
MONO = ["ui-monospace", "DejaVu Sans Mono", "Menlo", "Consolas", "monospace"]

CSS = """
:root { --hn-bg: #f4ead7; --hn-bg-dark: #1a1816; --hn-accent: #b45309; --hn-accent-2: #14b8a6;
  --hn-accent-3: #6d28d9; --hn-text: #2c1810; --hn-text-dark: #f4ead7; --hn-error: #b91c1c;
  --hn-warn: #d97706; --hn-ok: #15803d; }
.hn-header h1 { margin: 0; font-size: 1.4rem; }
.hn-notice { border-left: 4px solid var(--hn-warn); padding: 0.3rem 0.6rem; }
.hn-table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
.hn-table th, .hn-table td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.4rem; text-align: left;
  vertical-align: top; overflow-wrap: anywhere; }
.hn-badge { background: var(--hn-accent); color: white; border-radius: 999px; padding: 0 0.5rem;
  font-size: 0.8rem; }
.hn-exercise { background: var(--hn-accent-3); color: white; padding: 0 0.4rem; border-radius: 4px; }
.hn-mode-offline { color: var(--hn-error); } .hn-mode-degraded { color: var(--hn-warn); }
.hn-mode-online, .hn-mode-up { color: var(--hn-ok); }
.hn-msg { border-bottom: 1px solid #eee; padding: 0.3rem 0; }
.hn-topology svg { width: 100%; max-width: 460px; height: auto; }
@media (max-width: 640px) { .gradio-container { padding: 0.25rem !important; }
  .hn-table { font-size: 0.8rem; } }
"""


def hearth_theme() -> gr.themes.Base:
    return gr.themes.Base(primary_hue="amber", secondary_hue="teal", neutral_hue="stone",
                          font=SANS, font_mono=MONO)
