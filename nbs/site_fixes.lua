-- Two fixes applied while Quarto renders the course site (listed under `filters` in _quarto.yml).
--
-- 1. `__main__.` in API signatures. nbdev renders `show_doc` at docs time by running a lesson's exported cells
--    in an execnb shell, whose module is `__main__`; fastcore formats annotations with
--    `inspect.formatannotation`, which prefixes every class not from `builtins` with its module. So a return
--    type defined in the same lesson reads `__main__.DatasetInfo`. The prefix is dropped from Python code
--    blocks (signatures); other output is left as the lesson printed it.
-- 2. The Colab badge is served from the site (colab-badge.svg) instead of colab.research.google.com, so pages
--    load no image from another site. The notebooks keep the usual badge URL, which GitHub and Colab show.

local BADGE = 'https://colab.research.google.com/assets/colab-badge.svg'

function CodeBlock(el)
  if el.classes:includes('python') and el.text:find('__main__.', 1, true) then
    el.text = el.text:gsub('__main__%.', '')
    return el
  end
end

function Image(el)
  if el.src == BADGE then
    el.src = 'colab-badge.svg'
    return el
  end
end
