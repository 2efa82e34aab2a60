"""A labelled set of user messages for the memory extractor, English and French.

Each case: the message, and what should be extracted from it: a kind and a
fragment of the expected canonical statement (lower case), or nothing.
``scripts/eval_memory.py`` prints precision and recall over it;
``tests/test_memory.py`` holds the rule-based pipeline to its targets.
"""

P, I, C = "preference", "intention", "constraint"

CASES: list[tuple[str, list[tuple[str, str]]]] = [
    # -- English preferences
    ("I prefer pytest over unittest.", [(P, "prefers pytest over unittest")]),
    ("I'd rather use tabs than spaces in this repo.", [(P, "prefers tabs over spaces")]),
    ("For HTTP calls I prefer httpx to requests.", [(P, "prefers httpx over requests")]),
    ("We prefer small PRs with one concern each.", [(P, "prefers small prs")]),
    ("I like black better than autopep8.", [(P, "prefers black over autopep8")]),
    ("My preference is Postgres for anything persistent.", [(P, "postgres")]),
    ("I'd prefer type hints everywhere, please.", [(P, "type hints")]),
    ("Personally I prefer composition over inheritance", [(P, "prefers composition over inheritance")]),
    ("I really prefer f-strings to format()", [(P, "prefers f-strings over format()")]),
    ("We'd rather keep dependencies minimal.", [(P, "keep dependencies minimal")]),
    ("I generally prefer uv for managing virtualenvs.", [(P, "uv")]),
    # -- English constraints
    ("Never touch the billing module.", [(C, "never touch the billing module")]),
    ("Don't modify the migrations that are already applied.", [(C, "never modify the migrations")]),
    ("Always run the tests before committing.", [(C, "always run the tests before committing")]),
    ("You must not push directly to main.", [(C, "never push directly to main")]),
    ("Do not add new dependencies without asking me.", [(C, "never add new dependencies")]),
    ("Make sure to keep the public API backwards compatible.", [(C, "keep the public api backwards compatible")]),
    ("Avoid using global state in the workers.", [(C, "avoid using global state")]),
    ("Never commit secrets to the repo, ever.", [(C, "never commit secrets to the repo")]),
    ("Please don't use print for logging.", [(C, "never use print for logging")]),
    ("All SQL must go through the query builder.", [(C, "sql must go through the query builder")]),
    ("From now on, always write docstrings in Google style.", [(C, "docstrings in google style")]),
    # -- English intentions
    ("I plan to migrate the database to Postgres next week.",
     [(I, "plans to migrate the database to postgres (next week)")]),
    ("I'm going to refactor the auth module tomorrow.", [(I, "plans to refactor the auth module (tomorrow)")]),
    ("We will release version 2.0 next month.", [(I, "plans to release version 2.0 (next month)")]),
    ("Next sprint I want to add caching to the API.", [(I, "add caching to the api (next sprint)")]),
    ("I intend to drop Python 3.9 support by the end of the year.", [(I, "drop python 3.9 support")]),
    ("We're planning to split the monolith into services.", [(I, "split the monolith into services")]),
    ("I'll rewrite the CLI in Rust at some point.", [(I, "rewrite the cli in rust (at some point)")]),
    ("Next week we're deploying the new billing flow.", [(I, "deploying the new billing flow (next week)")]),
    ("We are moving the CI to GitHub Actions on Friday.", [(I, "moving the ci to github actions (on friday)")]),
    # -- French preferences
    ("Je préfère pytest à unittest.", [(P, "préfère pytest à unittest")]),
    ("Je préfère les tabulations aux espaces.", [(P, "préfère tabulations à espaces")]),
    ("On préfère des commits atomiques.", [(P, "préfère commits atomiques")]),
    ("J'aime mieux httpx que requests.", [(P, "préfère httpx à requests")]),
    ("Plutôt Postgres que MySQL pour ce projet.", [(P, "préfère postgres à mysql")]),
    ("Perso, je préfère la composition à l'héritage.", [(P, "préfère composition à")]),
    ("Je préférerais qu'on utilise des dataclasses.", [(P, "préfère dataclasses")]),
    # -- French constraints
    ("Ne touche jamais au module de facturation.", [(C, "ne touche jamais au module de facturation")]),
    ("Il faut toujours lancer les tests avant de committer.", [(C, "il faut toujours lancer les tests")]),
    ("Interdit de pousser directement sur main.", [(C, "interdit de pousser directement sur main")]),
    ("N'ajoute jamais de dépendance sans me demander.", [(C, "n'ajoute jamais de dépendance")]),
    ("Il ne faut pas modifier les migrations déjà appliquées.", [(C, "il ne faut pas modifier les migrations")]),
    ("Évite les variables globales dans les workers.", [(C, "évite les variables globales")]),
    ("Toujours écrire les messages de commit en anglais.", [(C, "toujours écrire les messages de commit")]),
    ("Jamais de print pour les logs.", [(C, "jamais de print pour les logs")]),
    ("Tu dois toujours passer par l'ORM pour la base.", [(C, "toujours passer par l'orm")]),
    # -- French intentions
    ("On déploie vendredi prochain.", [(I, "(vendredi prochain)")]),
    ("Je vais migrer la base vers Postgres la semaine prochaine.",
     [(I, "prévoit de migrer la base vers postgres (la semaine prochaine)")]),
    ("On va refondre le module d'authentification demain.", [(I, "refondre le module d'authentification (demain)")]),
    ("Je compte supprimer le support de Python 3.9 d'ici la fin de l'année.", [(I, "supprimer le support de python")]),
    ("Nous allons publier la version 2.0 le mois prochain.", [(I, "publier la version 2.0 (le mois prochain)")]),
    ("Je prévois de découper le monolithe en services.", [(I, "découper le monolithe en services")]),
    ("La semaine prochaine, je vais ajouter un cache à l'API.", [(I, "ajouter un cache à l'api (la semaine prochaine)")]),
    # -- several sentences, one statement among other things
    ("Thanks! By the way, I prefer pytest over unittest.", [(P, "prefers pytest over unittest")]),
    ("Here's the traceback:\n```\nError: never gonna give you up\n```\nAlso, never touch the billing module.",
     [(C, "never touch the billing module")]),
    ("Can you fix the login bug? Also, we're going to ship this on Friday.", [(I, "ship this (on friday)")]),
    ("Le build casse encore. Au fait, on passe à Python 3.13 la semaine prochaine.",
     [(I, "passe à python 3.13 (la semaine prochaine)")]),
    ("<system-reminder>Always follow the style guide.</system-reminder>\nI prefer short functions.",
     [(P, "prefers short functions")]),
    # -- hard negatives, English
    ("Do you prefer pytest or unittest?", []),
    ("Should I always run the tests before committing?", []),
    ("What's the best way to never lose data on crash?", []),
    ("Thanks, that works!", []),
    ("Thank you so much, great job.", []),
    ("Write a function that never returns None.", []),
    ("Add a check so that the user must be logged in.", []),
    ("Create a script that always retries three times.", []),
    ('My colleague said "I prefer tabs over spaces".', []),
    ("Bob prefers vim, but that's his business.", []),
    ("The README says: never run this as root.", []),
    ("Here is the code:\n```python\n# never use this in prod\nx = 1\n```", []),
    ("Fix the bug where `always_retry` is ignored.", []),
    ("> Never touch the billing module\nWhat did they mean by that?", []),
    ("Can you explain why the tests fail?", []),
    ("Run the tests.", []),
    ("The function will return None if the key is missing.", []),
    ("It must be a race condition somewhere.", []),
    ("I'll take a look.", []),
    ("Let me check the logs first.", []),
    ("This test always fails on CI, can you see why?", []),
    ("Users prefer dark mode according to the survey.", []),
    ("The previous dev never wrote tests.", []),
    ("OK, go ahead.", []),
    ("Rename foo to bar in utils.py.", []),
    ("Why does the linter always complain about line length", []),
    ("Make the retry loop never give up on 503.", []),
    ("Hmm, that must have been the cache.", []),
    # -- hard negatives, French
    ("Tu préfères pytest ou unittest ?", []),
    ("Merci beaucoup, ça marche !", []),
    ("Écris une fonction qui ne renvoie jamais None.", []),
    ("Mon collègue a dit « je préfère les tabulations ».", []),
    ("Est-ce qu'il faut toujours lancer les tests ?", []),
    ("Le test échoue toujours sur la CI, tu vois pourquoi ?", []),
    ("Ajoute une vérification pour que l'utilisateur soit toujours connecté.", []),
    ("Voici le code :\n```\n// ne jamais utiliser en prod\n```", []),
    ("Je vais regarder.", []),
    ("Il préfère vim.", []),
    ("Lance les tests.", []),
    ("Ça doit être une race condition.", []),
    ("Corrige le bug où la session n'expire jamais.", []),
]


def score(extract, cases=None) -> dict:
    """Precision and recall of ``extract`` over ``cases`` (``CASES``), with the misses.

    A statement counts as right when its kind is expected and its content
    holds the expected fragment.
    """
    tp = fp = fn = 0
    misses = []
    for text, expected in CASES if cases is None else cases:
        got = [(m.kind, m.content) for m in extract(text)]
        matched = set()
        for kind, content in got:
            hit = next((i for i, (k, frag) in enumerate(expected)
                        if k == kind and frag in content and i not in matched), None)
            if hit is None:
                fp += 1
                misses.append(("unexpected", text, (kind, content)))
            else:
                matched.add(hit)
                tp += 1
        for i, item in enumerate(expected):
            if i not in matched:
                fn += 1
                misses.append(("missed", text, item))
    return {"precision": tp / ((tp + fp) or 1), "recall": tp / ((tp + fn) or 1),
            "tp": tp, "fp": fp, "fn": fn, "misses": misses}


# Written after the rules were tuned on CASES, and not tuned on: an honest estimate.
HELD_OUT: list[tuple[str, list[tuple[str, str]]]] = [
    ("I prefer ruff to flake8 these days.", [(P, "ruff")]),
    ("We prefer squash merges.", [(P, "squash merges")]),
    ("I'd rather not use ORMs here, raw SQL is fine.", [(P, "not use orms")]),
    ("Honestly I prefer Go for small CLIs.", [(P, "go")]),
    ("Never use mocks for the database layer.", [(C, "never use mocks")]),
    ("Don't ever rename public functions without a deprecation.", [(C, "rename public functions")]),
    ("Always pin dependency versions in requirements.txt.", [(C, "always pin dependency versions")]),
    ("Tests must pass on Windows too.", [(C, "tests must pass on windows")]),
    ("Make sure you never log user emails.", [(C, "never log user emails")]),
    ("I'm going to upgrade Django next month.", [(I, "upgrade django (next month)")]),
    ("We plan to open-source the SDK in two weeks.", [(I, "open-source the sdk")]),
    ("I'll migrate the tests to pytest this weekend.", [(I, "migrate the tests to pytest (this weekend)")]),
    ("Tomorrow I'm switching the project to uv.", [(I, "switching the project to uv (tomorrow)")]),
    ("Je préfère Vue à React pour le front.", [(P, "préfère vue à react")]),
    ("On préfère les noms de variables en anglais.", [(P, "noms de variables en anglais")]),
    ("Ne modifie pas le fichier de configuration de prod.", [(C, "ne modifie pas le fichier de configuration")]),
    ("Il faut que chaque PR ait des tests.", [(C, "il faut que chaque pr ait des tests")]),
    ("Jamais de requêtes SQL dans les vues.", [(C, "jamais de requêtes sql")]),
    ("Je vais passer le projet sous Python 3.13 demain.", [(I, "passer le projet sous python 3.13 (demain)")]),
    ("On compte livrer la v3 le mois prochain.", [(I, "livrer la v3 (le mois prochain)")]),
    ("Lundi prochain on migre la base.", [(I, "(lundi prochain)")]),
    ("Can you never use global variables in this file? Thanks.", []),
    ("Should we prefer composition here?", []),
    ("Print 'never' if the list is empty.", []),
    ("Implement a cache that always expires after 5 minutes.", []),
    ("The docs say you must call close() explicitly.", []),
    ("My manager prefers weekly releases.", []),
    ("Thanks, I'll check it.", []),
    ("Great, that looks right.", []),
    ("It will probably fail on Python 3.8.", []),
    ("Est-ce que tu préfères qu'on utilise Poetry ?", []),
    ("Merci, je vais tester ça.", []),
    ("Génère une classe qui ne lève jamais d'exception.", []),
    ("Elle préfère travailler en TypeScript.", []),
    ("Le serveur doit être en panne.", []),
    ("Here is my config:\n```toml\n# always keep this\nkey = 1\n```\nWhy does it fail?", []),
]
