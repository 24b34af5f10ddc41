"""The docs site as readers get it: built by `nbdev-docs` with Quarto in a temporary copy of the repository, checked
page by page (pages, sidebar, links, anchors, images, signatures, machine paths, API docs), then loaded in headless
Chromium (math typeset, figures drawn, widgets drawn, console clean), with a screenshot of every page.

Skips, saying why, when `quarto` is not on PATH (tools: ../shared/quarto/install.sh, which .ci/run runs), and the
browser part when Chromium or the local copies of the CDN scripts (tools/fetch_site_cdn.sh) are missing.
Screenshots and a JSON summary go to $CI_ARTIFACTS/screenshots (default: a pytest temporary folder).
"""
import functools, importlib, inspect, json, os, re, shutil, subprocess, threading, time, tomllib
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit
import pytest

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_'))
MACHINE_PATH = re.compile(r'(?<![\w.~-])(?:/work/|/tmp/|/root/|/home/)[^\s"\'<>]*')
EXTERNAL = ('http://', 'https://', '//', 'mailto:', 'javascript:', 'tel:')
# the CDN scripts Quarto's pages load, and where tools/fetch_site_cdn.sh puts a copy of each
CDN = {'https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml-full.js': 'mathjax/es5/tex-chtml-full.js',
       'https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.6/require.min.js': 'requirejs/require.js',
       'https://cdnjs.cloudflare.com/ajax/libs/jquery/3.5.1/jquery.min.js': 'jquery/dist/jquery.min.js',
       'https://unpkg.com/@jupyter-widgets/html-manager@*/dist/embed-amd.js': '@jupyter-widgets/html-manager/dist/embed-amd.js'}
DROPPED = ('https://cdnjs.cloudflare.com/polyfill/',)  # an ES6 polyfill that Chromium does not need
HARMLESS = re.compile(r"TypeError.*'Queue'|'Queue'.*TypeError|MathJax\.Hub")  # html-manager calls MathJax 2's API under MathJax 3

def page_of(nb:Path)->str: return re.sub(r'^\d+_', '', nb.stem) + '.html'  # Quarto drops the number prefix

class Page(HTMLParser):
    "The ids, links, images and scripts of one HTML page, and the hrefs of its sidebar."
    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.ids, self.links, self.imgs, self.scripts, self.sidebar, self._nav = set(), [], [], [], [], 0
        self.feed(text)
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ('id', 'name'):
            if a.get(k) and (k == 'id' or tag == 'a'): self.ids.add(a[k])
        if tag == 'nav': self._nav = self._nav + 1 if self._nav or a.get('id') == 'quarto-sidebar' else 0
        if tag == 'a' and a.get('href') is not None:
            self.links.append(a['href'])
            if self._nav: self.sidebar.append(a['href'])
        if tag == 'img': self.imgs.append(a.get('src') or '')
        if tag == 'script' and a.get('src'): self.scripts.append(a['src'])
    def handle_endtag(self, tag):
        if tag == 'nav' and self._nav: self._nav -= 1

class Site:
    def __init__(self, docs:Path, seconds:float, out:Path):
        self.docs, self.seconds, self.out = docs, seconds, out
        self.files = sorted(docs.glob('*.html'))
        self.text = {p.name: p.read_text(encoding='utf-8') for p in self.files}
        self.pages = {n: Page(t) for n, t in self.text.items()}
        self.report = {'build_seconds': round(seconds, 1), 'pages': len(self.files)}
    def save(self): (self.out/'site_report.json').write_text(json.dumps(self.report, indent=1))

def _artifacts(tmp_path_factory)->Path:
    out = Path(os.environ['CI_ARTIFACTS']) if os.environ.get('CI_ARTIFACTS') else tmp_path_factory.mktemp('site_screenshots')
    out.mkdir(parents=True, exist_ok=True)
    return out

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    if not shutil.which('quarto'):
        pytest.skip("quarto is not on PATH: install it (QBIN=$(../shared/quarto/install.sh); PATH=$QBIN:$PATH), as .ci/run does")
    work = tmp_path_factory.mktemp('site')/'repo'  # never _docs or _proc in the checkout
    shutil.copytree(ROOT, work, symlinks=True, ignore=shutil.ignore_patterns(
        '.git', '_docs', '_proc', '*.egg-info', '__pycache__', '.pytest_cache', '.ipynb_checkpoints', 'build', 'dist'))
    start = time.perf_counter()
    r = subprocess.run(['nbdev-docs'], cwd=work, capture_output=True, text=True, timeout=1200)
    seconds = time.perf_counter() - start
    assert r.returncode == 0, f"nbdev-docs failed ({seconds:.0f} s):\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    s = Site(work/'_docs', seconds, _artifacts(tmp_path_factory))
    yield s
    s.save()

def test_every_lesson_has_a_page_in_the_sidebar(site):
    missing = [page_of(nb) for nb in LESSONS if page_of(nb) not in site.pages]
    assert not missing, f"no page for {missing}; pages: {sorted(site.pages)}"
    for name, page in site.pages.items():
        listed = {urlsplit(urljoin(name, h)).path for h in page.sidebar}
        absent = [page_of(nb) for nb in LESSONS if page_of(nb) not in listed]
        assert not absent, f"{name}: the sidebar lacks {absent}"

def test_internal_links_and_anchors_resolve(site):
    broken, n_internal, n_external = [], 0, 0
    home = tomllib.loads((ROOT/'pyproject.toml').read_text())['project']['urls']['Documentation']  # the site's own address
    for name, page in site.pages.items():
        for href in page.links:
            # nbdev writes links to documented names as absolute addresses on the site: they are checked here too
            own = href.startswith(home)
            if not href or href.startswith(EXTERNAL) and not own: n_external += bool(href); continue
            n_internal += 1
            url = urlsplit(href[len(home):] if own else urljoin(name, href))
            target = unquote(url.path) or ('index.html' if own else name)
            if target.endswith('/'): target += 'index.html'
            if not (site.docs/target).is_file(): broken.append(f"{name}: {href} (no file {target})"); continue
            if url.fragment and target.endswith('.html'):
                ids = site.pages[target].ids if target in site.pages else Page((site.docs/target).read_text(encoding='utf-8')).ids
                if unquote(url.fragment) not in ids: broken.append(f"{name}: {href} (no anchor #{url.fragment} in {target})")
    site.report.update(internal_links=n_internal, external_links_not_checked=n_external)
    assert not broken, f"{len(broken)} broken of {n_internal} internal links:\n" + '\n'.join(broken[:50])

def test_every_image_loads(site):
    bad, n = [], 0
    for name, page in site.pages.items():
        for src in page.imgs:
            n += 1
            if src.startswith('data:'):
                if len(src) < 40: bad.append(f"{name}: an empty data: image")
            elif src.startswith(EXTERNAL): bad.append(f"{name}: {src} is on another site (not loaded offline; serve a copy)")
            else:
                f = site.docs/unquote(urlsplit(urljoin(name, src)).path)
                if not f.is_file() or f.stat().st_size == 0: bad.append(f"{name}: {src} is missing or empty")
    site.report['images'] = n
    assert n and not bad, f"{len(bad)} of {n} images do not load:\n" + '\n'.join(bad)

def _pages_and_markdown(site):
    for name, text in site.text.items():
        yield name, text
        md = site.docs/f'{name}.md'  # keep-md: the Markdown version of the page
        if md.exists(): yield md.name, md.read_text(encoding='utf-8')

def test_no_main_prefix_in_any_page(site):
    found = sorted({f"{label}: {m.group()}" for label, t in _pages_and_markdown(site) for m in re.finditer(r'__main__\.\w+', t)})
    assert not found, f"{len(found)} `__main__.` names:\n" + '\n'.join(found)

def test_no_machine_local_path_in_any_page(site):
    hits = sorted({f"{label}: {m.group()!r}" for label, t in _pages_and_markdown(site) for m in MACHINE_PATH.finditer(t)})
    assert not hits, f"{len(hits)} machine-local paths (committed outputs of a run on one machine):\n" + '\n'.join(hits)

def test_api_docs_of_every_exported_name(site):
    from vae_course._modidx import d
    missing, n = [], 0
    for mod, syms in d['syms'].items():
        m = importlib.import_module(mod)
        for name in getattr(m, '__all__', []):
            obj = getattr(m, name)
            # constants have no show_doc
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or obj.__module__ != mod: continue
            n += 1
            entry = syms.get(f'{mod}.{name}')
            if entry is None: missing.append(f"{mod}.{name}: not in _modidx.py"); continue
            page, _, anchor = entry[0].partition('#')
            if page not in site.pages: missing.append(f"{mod}.{name}: no page {page}")
            elif anchor not in site.pages[page].ids: missing.append(f"{mod}.{name}: no #{anchor} in {page}")
            elif not re.search(rf'\b{re.escape(name)}\b', site.text[page]): missing.append(f"{mod}.{name}: not named in {page}")
    site.report['api_names'] = n
    assert n and not missing, '\n'.join(missing)

# ---- the browser check ------------------------------------------------------------------------------------
# A probe, injected first into <head> of a served copy of each page, records console errors, failed resources
# and uncaught exceptions; once the page, MathJax and the widgets have had their time, it writes what a reader
# would see into <pre id="site-probe"> for `--dump-dom` to return.
PROBE = r"""<script>(function(){
const errors = []; window.__probe_errors = errors;
const oe = console.error.bind(console);
console.error = (...a) => { errors.push('console.error: ' + a.map(String).join(' ')); oe(...a); };
window.addEventListener('error', e => { const t = e.target;
  if (t && t !== window && (t.src || t.href)) errors.push('failed to load: ' + (t.src || t.href));
  else errors.push('uncaught: ' + (e.message || e)); }, true);
window.addEventListener('unhandledrejection',
  e => errors.push('unhandled rejection: ' + (e.reason && (e.reason.stack || e.reason))));
async function report() {
  try { if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise; }
  catch (e) { errors.push('MathJax: ' + e); }
  await new Promise(r => setTimeout(r, 3000));
  const text = document.body.cloneNode(true);
  text.querySelectorAll('script, pre, code, .sourceCode, #site-probe').forEach(n => n.remove());
  const imgs = [...document.images].filter(i => !i.closest('.navbar, .sidebar'));
  const r = {
    math: document.querySelectorAll('span.math').length,
    math_typeset: document.querySelectorAll('mjx-container').length,
    math_raw: document.querySelectorAll('span.math:not(:has(mjx-container))').length,
    raw_dollars: (text.textContent.match(/\$\$|\\\[|\\\(/g) || []).length,
    images: imgs.length,
    images_broken: imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src').slice(0, 80)),
    widget_views: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
    widgets_drawn: document.querySelectorAll(
      '.jupyter-widgets.widget-slider, .widget-slider, .jupyter-widgets canvas, .jupyter-widgets img').length,
    widget_boxes: document.querySelectorAll('.jupyter-widgets').length,
    errors: errors };
  const pre = document.createElement('pre'); pre.id = 'site-probe'; pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
}
window.addEventListener('load', () => setTimeout(report, 500));
})();</script>"""

def _chromium():
    for name in ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'):
        if shutil.which(name): return shutil.which(name)

def _cdn_cache()->Path:
    return Path(os.environ.get('SITE_CDN_CACHE') or Path.home()/'.cache'/'vae_course'/'site-cdn')

def _offline_copy(text:str)->tuple:
    "The page with CDN scripts pointed at the local copies (integrity and crossorigin dropped) and the probe first in <head>."
    unknown = []
    def script(m):
        tag = m.group(0); src = re.search(r'src="([^"]+)"', tag).group(1)
        if src.startswith(DROPPED): return ''
        if src in CDN:
            return re.sub(r'\s(integrity|crossorigin)="[^"]*"', '', tag.replace(src, '/_cdn/' + CDN[src]))
        if src.startswith(EXTERNAL): unknown.append(src)
        return tag
    text = re.sub(r'<script\b[^>]*\bsrc="[^"]+"[^>]*>\s*</script>', script, text)
    text = text.replace(' loading="lazy"', '')
    return text.replace('<head>', '<head>\n' + PROBE, 1), unknown

class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args): pass

def _browse(chromium, url, profile, *extra, timeout=180):
    flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
             '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', '--hide-scrollbars', '--mute-audio',
             f'--user-data-dir={profile}', '--virtual-time-budget=30000', '--window-size=1280,2000']
    return subprocess.run([chromium, *flags, *extra, url], capture_output=True, text=True, timeout=timeout)

def test_pages_in_a_browser(site, tmp_path):
    chromium = _chromium()
    if not chromium: pytest.skip("no Chromium: apt-get install chromium (.ci/run does, as root)")
    cdn = _cdn_cache()
    if not all((cdn/f).is_file() for f in CDN.values()):
        pytest.skip(f"no local copies of the CDN scripts in {cdn}: run tools/fetch_site_cdn.sh (.ci/run does)")
    served = tmp_path/'served'
    shutil.copytree(site.docs, served)
    (served/'_cdn').symlink_to(cdn, target_is_directory=True)
    problems = []
    for f in (served/'site_libs').rglob('*.css'):  # the theme imports its font from Google Fonts: not reachable offline
        f.write_text(re.sub(r'@import\s*(?:url\()?\s*["\']https?://[^"\']*["\']\s*\)?\s*;?', '',
                            f.read_text(encoding='utf-8')), encoding='utf-8')
    for f in served.glob('*.html'):
        text, unknown = _offline_copy(f.read_text(encoding='utf-8'))
        f.write_text(text, encoding='utf-8')
        problems += [f"{f.name}: loads {u} (no local copy: add it to CDN in this test and to tools/fetch_site_cdn.sh)"
                     for u in unknown]
    server = ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f'http://127.0.0.1:{server.server_address[1]}/'
    shots, results, start = site.out/'screenshots', {}, time.perf_counter()
    shots.mkdir(exist_ok=True)
    try:
        for name in sorted(site.pages):
            r = _browse(chromium, base + name, tmp_path/f'profile-{name}', '--dump-dom')
            m = re.search(r'<pre id="site-probe">(.*?)</pre>', r.stdout, re.S)
            if not m:
                problems.append(f"{name}: the page did not finish loading (chromium exit {r.returncode}): "
                                f"{r.stderr[-500:]}")
                continue
            import html as _html
            res = results[name] = json.loads(_html.unescape(m.group(1)))
            _browse(chromium, base + name, tmp_path/f'profile-shot-{name}', f'--screenshot={shots/name.replace(".html", ".png")}')
            if res['math_raw'] or res['raw_dollars']:
                problems.append(f"{name}: math not typeset ({res['math_raw']} of {res['math']} formulas raw, "
                                f"{res['raw_dollars']} raw delimiters)")
            if res['images_broken']:
                problems.append(f"{name}: {len(res['images_broken'])} of {res['images']} images not drawn: "
                                f"{res['images_broken'][:5]}")
            if res['widget_views'] and not res['widgets_drawn']:
                problems.append(f"{name}: {res['widget_views']} widgets not drawn")
            errors = [e for e in res['errors'] if not HARMLESS.search(e)]
            if errors: problems.append(f"{name}: console errors: {errors[:5]}")
    finally:
        server.shutdown(); server.server_close()
    site.report.update(browser_seconds=round(time.perf_counter() - start, 1), screenshots=str(shots),
                       browser={n: {**r, 'errors': sorted({e[:160] for e in r['errors']})[:5],
                                    'n_errors': len(r['errors'])} for n, r in results.items()})
    explorer = page_of(next(nb for nb in LESSONS if 'latent_explorer' in nb.stem))
    assert results.get(explorer, {}).get('widgets_drawn'), f"{explorer}: no widget drawn ({results.get(explorer)})"
    assert sum(r['math_typeset'] for r in results.values()) > 0, "no formula typeset on any page"
    assert not problems, '\n'.join(problems)
