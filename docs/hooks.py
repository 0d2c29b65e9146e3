"""MkDocs hook: links from a page to repository files outside docs/ (source, benchmark results).

Such a link works where the Markdown is read in the repository, but the site holds only docs/.
This hook fails the build when the file does not exist (a broken link must fail, as MkDocs
fails for a broken link between pages) and otherwise points it at the repository
(``repo_url`` in mkdocs.yml) or, with no ``repo_url``, shows the path as code.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.exceptions import PluginError

LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def on_page_markdown(markdown, page, config, files):  # noqa: ANN001 - MkDocs' hook signature
    docs = Path(config["docs_dir"]).resolve()
    root = docs.parent
    here = (docs / page.file.src_path).parent

    def rewrite(match: re.Match) -> str:
        bang, text, target = match.groups()
        if re.match(r"[a-z]+:|#|/", target):
            return match.group(0)
        path, _, anchor = target.partition("#")
        resolved = (here / path).resolve()
        if resolved.is_relative_to(docs):
            return match.group(0)  # between pages: MkDocs checks it
        if not resolved.is_relative_to(root) or not resolved.exists():
            raise PluginError(f"{page.file.src_path}: link to {target!r}, which does not exist in the repository")
        relative = resolved.relative_to(root).as_posix()
        if config.get("repo_url"):
            kind = "raw" if bang else ("tree" if resolved.is_dir() else "blob")
            url = f"{config['repo_url'].rstrip('/')}/{kind}/HEAD/{relative}" + (f"#{anchor}" if anchor else "")
            return f"{bang}[{text}]({url})"
        return f"{text} (`{relative}`)" if text and text.strip("`") != relative else f"`{relative}`"

    return LINK.sub(rewrite, markdown)
