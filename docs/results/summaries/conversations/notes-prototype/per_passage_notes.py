"""A prototype that was measured and NOT shipped (docs/summaries.md, "Buying recall by copying").

The focused sentences of each conversation (services/summarizer/focus.py, 200 words) are routed
by cue words to decisions, action items and up to five groups of key points; the 0.5B rewrites
each unit in its own request ("one note of at most twenty-five words"), a title comes from one
more request, and a note whose words or numbers are not in its passage is replaced by the
passage, cut. It keeps 80 % of the key facts, but 72 % of its words are verbatim 8-word runs of
the transcript: it keeps facts by keeping sentences. The cue words were written after reading
the evaluation's transcripts. Kept as the exact script behind 0.5b-per-passage-25-words.json:

    python docs/results/summaries/conversations/notes-prototype/per_passage_notes.py conversations
"""
import asyncio, json, re, sys, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[5]))
from bench.summaries import score, load_items, DATA_SETS, _model_path
from services.common.settings import LlmSettings
from services.summarizer.client import ChatClient, RetryPolicy
from services.summarizer.focus import information, focus
from services.summarizer.prompts import split_sentences
from services.common.documents import SummaryContent, ActionItem
from services.summarizer.render import render_markdown
from services.summarizer.settings import DEFAULT_SYSTEM_PROMPT
from services.runtime.llm_local import LocalLlmServer

DAYS = r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|tomorrow|tonight"
DECISION = re.compile(r"\b(decid\w*|agreed|approv\w*|go with|going with|chose|chosen|settled on|the decision|the plan is)\b", re.I)
ACTION = re.compile(r"\b(you'll|you will|I'll|I will|we'll|we will|will \w+|can you|could you|please|going to|need to|action)\b", re.I)
OWNER = re.compile(r"\b([A-Z][a-z]+),? (?:you'll|you will|will|'ll|can you|could you|please|is going to|takes|owns)\b")
DUE = re.compile(rf"\b(by (?:next |this |the end of (?:the )?)?(?:{DAYS}|week|month|day))\b|\b((?:next|this) (?:{DAYS}|week|month))\b", re.I)
NOT_NAMES = {"I", "We", "You", "They", "He", "She", "It", "So", "And", "But", "Then", "Okay", "Ok", "Yes", "No", "The", "That", "This", "First", "Second", "Third", "Meanwhile", "Also", "Now"}
NUM = re.compile(r"\d+(?:[.,]\d+)*")
WORDS = int(sys.argv[3]) if len(sys.argv) > 3 else 200

def units(text):
    sents = split_sentences(text)
    keep = set(split_sentences(focus(text, WORDS)))
    chosen = [s for s in sents if s in keep]
    decisions, actions, points = [], [], []
    for s in chosen:
        owner = next((m.group(1) for m in OWNER.finditer(s) if m.group(1) not in NOT_NAMES), None)
        due = DUE.search(s)
        if DECISION.search(s) and len(decisions) < 3:
            decisions.append(("decision", [s], None, None))
        elif ACTION.search(s) and (owner or due) and len(actions) < 4:
            actions.append(("action", [s], owner, (due.group(1) or due.group(2)) if due else None))
        else:
            points.append(s)
    # points: consecutive sentences grouped into at most 5 groups of about equal words
    groups = []
    if points:
        total = sum(len(p.split()) for p in points); n = min(5, len(points)); target = total / n
        cur, done = [], 0
        for i, p in enumerate(points):
            cur.append(p); done += len(p.split())
            left = len(points) - i - 1
            if len(groups) < n - 1 and (done >= target * (len(groups) + 1) or left == n - 1 - len(groups)):
                groups.append(cur); cur = []
        if cur: groups.append(cur)
    return [("point", g, None, None) for g in groups] + decisions + actions

INSTR = ("Rewrite the passage below, from a recorded conversation, as one note of at most twenty-five words "
 "that states its facts plainly, without filler, greetings or questions. Keep every number, amount, date and "
 "name exactly as written; add nothing that is not in the passage.")
TITLE = ("Write a title of at most eight words naming what the conversation below is about.")
NOTE = {"type": "json_schema", "json_schema": {"name": "note", "strict": True, "schema": {
    "type": "object", "additionalProperties": False, "required": ["note"],
    "properties": {"note": {"type": "string", "maxLength": 170}}}}}
TITLE_FMT = {"type": "json_schema", "json_schema": {"name": "title", "strict": True, "schema": {
    "type": "object", "additionalProperties": False, "required": ["title"],
    "properties": {"title": {"type": "string", "maxLength": 90}}}}}
CONTENT = re.compile(r"[a-z0-9]+")
STOP = set("the a an and or of to in on at for is are was were be it that this with as by from we you i they he she our your their".split())

def nums(t): return {n.replace(",", "").rstrip("0").rstrip(".") if "." in n else n.replace(",", "") for n in NUM.findall(t)}

def grounded(note, src):
    words = [w for w in CONTENT.findall(note.lower()) if w not in STOP]
    srcw = set(CONTENT.findall(src.lower()))
    return bool(words) and nums(note) <= nums(src) and sum(w in srcw for w in words) >= 0.6 * len(words)

def cut(src, limit=170):
    if len(src) <= limit: return src
    head = src[:limit].rsplit(" ", 1)[0]
    return head.rstrip(" ,;:") + "…"

def msgs(instr, body):
    return [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": f"{instr}\n\n{body}"}]

async def one(client, item, sem, out):
    async with sem:
        t0 = time.perf_counter()
        us = units(item["text"])
        srcs = [" ".join(u[1]) for u in us]
        results = await asyncio.gather(
            client.chat(msgs(TITLE, "Conversation:\n" + "\n".join(srcs)), response_format=TITLE_FMT, max_tokens=40),
            *(client.chat(msgs(INSTR, "Passage:\n" + src), response_format=NOTE, max_tokens=80) for src in srcs))
        title = json.loads(results[0].text)["title"]
        points, decisions, actions, fallbacks = [], [], [], 0
        for (kind, ss, owner, due), src, r in zip(us, srcs, results[1:]):
            try: note = " ".join(json.loads(r.text)["note"].split())
            except Exception: note = ""
            if not grounded(note, src):
                note = cut(src); fallbacks += 1
            if kind == "point": points.append(note)
            elif kind == "decision": decisions.append(note)
            else: actions.append(ActionItem(task=note, owner=owner, due=due))
        c = SummaryContent(title=title, key_points=points, decisions=decisions, action_items=actions)
        md = render_markdown(c)
        s = score(item, md); ext = score(item, " ".join(srcs))
        row = dict(id=item["id"], recall=s.recall, kept=s.kept, total=s.total, extractive=ext.kept, compression=round(s.compression, 3),
                   invented=s.invented_numbers, names=s.invented_names, lost=s.lost, wall=round(time.perf_counter()-t0, 1),
                   tokens_out=sum(r.tokens_out for r in results), fallbacks=fallbacks, summary=md)
        out.append(row); print(item["id"], f"{s.kept}/{s.total} (extractive {ext.kept}) {s.compression:.2f} {s.invented_numbers} fallbacks {fallbacks} {row['wall']}s", flush=True)

async def main(data, label):
    items = load_items(None, DATA_SETS[data])
    with LocalLlmServer(_model_path(label), threads=2, parallel=4) as server:
        llm = LlmSettings(base_url=server.base_url, model=label, max_tokens=512)
        out = []
        async with ChatClient(llm, retry=RetryPolicy(deadline_s=900), max_connections=16) as client:
            sem = asyncio.Semaphore(4)
            await asyncio.gather(*(one(client, it, sem, out) for it in items))
    kept = sum(r["kept"] for r in out); tot = sum(r["total"] for r in out); ext = sum(r["extractive"] for r in out)
    print(f"RECALL {kept/tot:.1%} (extractive {ext/tot:.1%}) compression mean {sum(r['compression'] for r in out)/len(out):.2f} max {max(r['compression'] for r in out):.2f} invented {sum(len(r['invented']) for r in out)} wall {sum(r['wall'] for r in out)/len(out):.0f}s")
    json.dump(out, open(f"{label}-per-passage-25-words.json", "w"), indent=1)

if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "0.5b"))
