"""The built-in prompt set of the load benchmark: 32 varied single-turn user prompts.

Owns only the text. The prompts are 33-106 tokens of text with SmolLM2's tokenizer (about
55-140 prompt tokens once a chat template wraps them), so prefill cost varies across requests as
in real traffic. Knows nothing of ordering, request bodies or servers (that is ``workload``).
"""

from __future__ import annotations

__all__ = ["BUILTIN_PROMPTS"]

BUILTIN_PROMPTS: tuple[str, ...] = (
    "Explain in plain words why the sky looks blue during the day but red and orange at sunset. "
    "Mention what happens to sunlight as it passes through the atmosphere, and keep it short enough "
    "for a curious ten-year-old to follow. My niece asked me this on a walk last week and I gave a "
    "muddled answer about the ocean reflecting the sky, which I now suspect is wrong.",
    "I have a small balcony that gets about four hours of direct sun in the afternoon. Which herbs "
    "would grow well there in pots, how often should I water them in summer, and what is the most "
    "common mistake beginners make with basil?",
    "Write a Python function that takes a list of integers and returns the length of the longest "
    "strictly increasing contiguous run. Include a docstring, handle the empty list, and give two "
    "short examples of its use. Assume the list can have up to a million elements, so the solution "
    "should run in linear time. Please also explain in two sentences why a naive approach that checks"
    " every pair of indices would be too slow, and what the function should return for a list in "
    "which every element is equal.",
    "Summarize the main causes of the French Revolution in five bullet points. Focus on economic "
    "pressure, the tax system, ideas from the Enlightenment, food prices and the political crisis of "
    "1789. Each bullet should be one sentence. After the bullets, add one sentence on which of these "
    "causes historians still argue about most.",
    "My team keeps missing sprint goals because tickets grow during the sprint. Suggest three "
    "concrete changes to our planning meeting that would make estimates more honest, and explain how "
    "we would know after a month whether they worked. For context: we are six developers, we run "
    "two-week sprints, our product owner writes most tickets the day before planning, and we estimate"
    " in story points that nobody outside the team understands. Last quarter we finished about sixty "
    "percent of what we committed to.",
    "What is the difference between a process and a thread in an operating system? Compare memory "
    "sharing, the cost of creating each, how they fail, and give one situation where each is the "
    "better choice.",
    "Draft a polite email to a landlord asking to repair a leaking kitchen tap that has dripped for "
    "two weeks. Mention that I reported it once by phone, ask for a date, and offer two times when I "
    "am at home. Keep it under one hundred and fifty words and friendly in tone, since I would like "
    "to stay on good terms with them.",
    "Describe how a refrigerator moves heat from inside the box to the kitchen. Walk through the "
    "compressor, the condenser coils at the back, the expansion valve and the evaporator, and say why"
    " the back of the fridge feels warm. A diagram is not possible here, so please describe the cycle"
    " in numbered steps. I also wonder why the freezer compartment gets colder than the rest, and "
    "whether leaving the door open on a hot day would cool the kitchen down.",
    "Give me a three-day beginner workout plan that needs no equipment and takes thirty minutes a "
    "day. Include a warm-up, the exercises with repetitions, and a note on how to make it harder "
    "after two weeks.",
    "Translate the following sentence into French, Spanish and German, and point out one grammatical "
    "difference between the three translations: 'The old bookshop on the corner closes early on "
    "Sundays, so we should go tomorrow morning.'",
    "Explain what a hash table is to someone who knows arrays but has never heard of hashing. Cover "
    "hash functions, collisions, resizing, and why lookups are fast on average but can be slow in the"
    " worst case. If it helps, compare it to looking up a word in a paper dictionary, and end with a "
    "tiny example in Python using a dictionary of fruit prices.",
    "I am planning a one-week trip to Portugal in October. Propose a rough itinerary that starts in "
    "Lisbon, includes one smaller town and some time by the sea, and uses trains rather than a rental"
    " car where possible. We like food markets, old tiled buildings and short hikes, we do not mind "
    "early mornings, and our budget is moderate. Please mention roughly how long each train ride "
    "takes and which day would be best for a day trip out of Lisbon.",
    "Write a short story opening, about one hundred words, in which a lighthouse keeper finds a "
    "letter addressed to someone who left the island forty years ago. End the paragraph on a question"
    " that makes the reader want to continue.",
    "What are the trade-offs between renting and buying a home for someone who might move cities in "
    "three years? Consider transaction costs, maintenance, flexibility, interest rates and the risk "
    "of prices falling. I earn a steady salary, have savings for about a twenty percent deposit, and "
    "my job may or may not move me to another country. Please end with a simple rule of thumb I could"
    " apply, and say which of the factors matters most in that short horizon.",
    "Explain the idea of compound interest with a worked example: 1000 euros invested at five percent"
    " per year for ten years, compounded yearly. Show the formula, the final amount, and how much of "
    "it is interest on interest.",
    "Review this SQL query and suggest how to make it faster on a table with ten million rows: SELECT"
    " * FROM orders WHERE status = 'open' AND created_at > now() - interval '7 days' ORDER BY "
    "created_at DESC LIMIT 50. There is an index on created_at only, the status column has four "
    "possible values, and about two percent of rows are open at any time. The database is PostgreSQL "
    "15 and the query runs on every page load of a dashboard.",
    "Why do cats purr? Describe what is known about the mechanism in the larynx, the situations in "
    "which cats purr besides contentment, and any evidence about purring helping with healing.",
    "Create a simple weekly meal plan for two vegetarians on a tight budget. Use dried beans, "
    "lentils, rice, eggs and seasonal vegetables, reuse leftovers, and list what to buy on Sunday. "
    "One of us does not eat mushrooms. We have a stove, an oven and a small freezer, and we are happy"
    " to cook in larger batches on Sunday afternoons.",
    "Compare TCP and UDP for a multiplayer game that sends player positions twenty times a second. "
    "Explain head-of-line blocking, what happens when a packet is lost, and why many games build "
    "their own reliability on top of UDP. Assume about sixty players per match, servers in three "
    "regions, and players on home Wi-Fi with occasional packet loss of one or two percent. Finish "
    "with a recommendation and the main risk of that choice.",
    "Explain photosynthesis in two short paragraphs: first what goes in and what comes out, then the "
    "role of chlorophyll and light. Avoid chemical formulas except for the overall equation.",
    "I keep procrastinating on writing my thesis. Suggest a daily routine for the next month that "
    "breaks the work into small pieces, protects focused time in the morning, and includes a way to "
    "track progress without feeling guilty. I work best between eight and eleven in the morning, I "
    "have two chapters left plus revisions, and my supervisor wants a full draft in six weeks. "
    "Meetings take most of my Tuesday and Thursday afternoons.",
    "Write a bash one-liner that finds the ten largest files under the current directory, including "
    "hidden ones, and prints their sizes in human-readable form. Then explain each part of the "
    "pipeline.",
    "What caused the 2008 financial crisis? Explain subprime mortgages, securitization, leverage at "
    "banks and the role of credit rating agencies, in language a first-year economics student would "
    "understand. Please keep the explanation to one paragraph and mention any common mistakes when "
    "analysing the causes of the crisis in hindsight.",
    "Describe the rules of chess castling precisely: when it is allowed, where the king and rook end "
    "up on each side, and the three situations involving check that forbid it.",
    "Suggest five names for a small neighbourhood bakery that specializes in sourdough and cardamom "
    "buns. For each name give a one-line reason and say whether it would work as a web address. The "
    "bakery is in a quiet residential street near a park, the owner is Swedish, and she wants "
    "something warm and simple rather than clever or trendy.",
    "Explain how vaccines train the immune system. Mention antigens, memory B and T cells, why some "
    "vaccines need boosters, and how mRNA vaccines differ from older inactivated-virus vaccines.",
    "Write unit tests in pytest for a function slugify(title) that lowercases text, replaces runs of "
    "non-alphanumeric characters with a single hyphen, and strips hyphens at both ends. Cover unicode"
    " and empty input. Use parametrize where it makes the tests shorter, and include at least one "
    "test that documents what happens with leading and trailing punctuation such as quotes or "
    "exclamation marks.",
    "How does a bill become law in a parliamentary system like the United Kingdom's? Outline the "
    "readings, the committee stage, the role of the second chamber and royal assent, in order.",
    "My houseplant's leaves are turning yellow from the bottom up and the soil stays damp for a week "
    "after watering. What is probably wrong, how do I check the roots, and how should I change my "
    "watering? It is a pothos in a plastic pot without drainage holes, standing about two metres from"
    " a north-facing window, and I water it with a full glass every four days.",
    "Explain the difference between precision and recall using a spam filter as the example. Give a "
    "small confusion matrix with numbers, compute both values, and say when you would favour one over"
    " the other.",
    "Plan a ninety-minute workshop that teaches a group of twelve volunteers how to use a shared "
    "calendar and task board. Include timings, one hands-on exercise and how to handle people who are"
    " less comfortable with computers. The volunteers are mostly retired teachers and students, the "
    "room has a projector and eight laptops, and the session is on a Saturday morning. Please also "
    "suggest what handout they should take home.",
    "Describe how the moon causes tides on Earth, why there are two high tides a day rather than one,"
    " and how spring and neap tides relate to the positions of the sun and the moon.",
)
