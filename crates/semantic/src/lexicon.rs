//! The word lists the [near-opposite guard](crate::guard) reads: negations, antonym axes,
//! verb–particle phrases, exclusive classes (units, weekdays, languages, platforms…), number
//! words and the words too common to carry meaning.
//!
//! Everything here is data. Words are written in their plain form; the guard stems them
//! with the same function it stems the text with, so inflections (`disabled`, `removing`,
//! `starts`) match without being listed. Phrases are written with `_` (`turn_on`) and are
//! produced by the guard from a verb followed, within a few words, by its particle.

/// Words that turn a question around. Contractions (`don't`, `can't`, `isn’t`…) are
/// recognised by their `n't` ending as well.
pub const NEGATIONS: &[&str] = &[
    "not", "no", "never", "none", "nothing", "nobody", "nowhere", "neither", "nor", "without",
    "cannot", "cant", "dont", "doesnt", "didnt", "isnt", "arent", "wasnt", "werent", "wont",
    "wouldnt", "shouldnt", "couldnt", "mustnt", "havent", "hasnt", "hadnt", "aint", "neednt",
    "unable", "fail", "fails", "failed", "failing",
];

/// Antonym axes: words on the first side against words on the second. A question whose
/// words sit only on one side of an axis never takes the answer of a question whose words
/// sit only on the other. An axis is named by the first word of its first side.
pub const AXES: &[(&str, &str)] = &[
    // Bringing something into being or into effect, and taking it away.
    (
        "enable activate turn_on switch_on power_on add insert attach append include create \
         install subscribe connect mount register set_up sign_up enroll opt_in plug_in setup",
        "disable deactivate turn_off switch_off power_off shut_off remove delete erase destroy \
         detach exclude uninstall unsubscribe disconnect unmount deregister unregister \
         unenroll opt_out unplug cancel cancelled cancelling cancellation revoke wipe purge \
         get_rid",
    ),
    (
        "start began begun begin launch resume boot start_up startup restart",
        "stop end finish halt pause quit terminate kill shut_down shutdown suspend",
    ),
    ("open reopen", "close shut"),
    ("join enter", "leave exit quit"),
    (
        "login log_in sign_in signin logon",
        "logout log_out sign_out signout logoff log_off",
    ),
    (
        "allow permit accept approve grant whitelist allowlist authorize enable",
        "deny block forbid prohibit reject refuse decline ban disallow blacklist blocklist \
         revoke unauthorize",
    ),
    (
        "increase raise grow expand boost maximize enlarge increment turn_up more higher gain \
         rise add",
        "decrease reduce lower shrink minimize decrement turn_down less fewer lose fall cut",
    ),
    (
        "up upward upwards upstairs ascend uphill",
        "down downward downwards downstairs descend downhill",
    ),
    ("upload", "download"),
    ("upgrade", "downgrade"),
    ("upvote", "downvote"),
    ("upstream", "downstream"),
    (
        "encrypt encipher encode compress zip pack serialize",
        "decrypt decipher decode decompress unzip unpack deserialize",
    ),
    ("import", "export"),
    ("input", "output"),
    ("inbound incoming", "outbound outgoing"),
    ("inhale", "exhale"),
    (
        "internal inside interior indoor indoors",
        "external outside exterior outdoor outdoors",
    ),
    ("buy bought purchase", "sell sold"),
    ("lend lent loan", "borrow borrowed"),
    ("send sent", "receive received"),
    ("push", "pull"),
    ("deposit", "withdraw withdrawal"),
    ("credit", "debit"),
    ("income revenue", "expense expenditure"),
    ("profit", "loss"),
    ("win", "lose loss lost"),
    ("merge combine concatenate unite", "split separate divide"),
    ("add plus addition sum", "subtract minus subtraction"),
    ("multiply multiplication", "divide division"),
    ("freeze froze frozen", "melt molten thaw boil"),
    (
        "hot warm heat warmer hotter heating",
        "cold cool chill colder cooler cooling",
    ),
    (
        "big large huge giant bigger larger",
        "small little tiny smaller",
    ),
    (
        "maximum max most highest largest biggest top greatest",
        "minimum min least lowest smallest bottom",
    ),
    ("tall taller tallest", "short shorter shortest"),
    (
        "long longer longest lengthen",
        "short shorter shortest shorten",
    ),
    ("high higher", "low lower"),
    (
        "fast faster fastest quick quicker quickest speed_up",
        "slow slower slowest slow_down",
    ),
    ("heavy heavier heaviest", "light lighter lightest"),
    (
        "old older oldest",
        "new newer newest young younger youngest",
    ),
    ("early earlier earliest", "late later latest"),
    (
        "near nearest close closer closest",
        "far farther farthest further furthest",
    ),
    (
        "cheap cheaper cheapest inexpensive affordable",
        "expensive costly pricey",
    ),
    (
        "easy easier easiest simple",
        "hard harder hardest difficult",
    ),
    ("good better best great", "bad worse worst poor"),
    (
        "right correct true valid accurate",
        "wrong incorrect false invalid inaccurate",
    ),
    (
        "safe safer safest secure harmless",
        "dangerous unsafe risky harmful insecure toxic",
    ),
    ("healthy", "unhealthy"),
    ("strong stronger strongest", "weak weaker weakest"),
    ("rich wealthy", "poor"),
    ("full", "empty"),
    ("wet", "dry"),
    ("light bright", "dark"),
    ("black", "white"),
    ("positive", "negative"),
    (
        "pro pros advantage benefit upside",
        "con cons disadvantage drawback downside",
    ),
    ("success successful succeed", "failure unsuccessful"),
    ("public", "private"),
    ("static", "dynamic"),
    ("sync synchronous", "async asynchronous"),
    ("manual manually", "automatic automatically auto"),
    ("online", "offline"),
    ("wired", "wireless"),
    ("vertical vertically", "horizontal horizontally"),
    ("uppercase capital", "lowercase"),
    ("ascending asc", "descending desc"),
    (
        "first earliest oldest initial",
        "last latest newest final recent",
    ),
    (
        "previous prior preceding",
        "next following upcoming subsequent",
    ),
    ("before", "after"),
    ("past", "future"),
    ("yesterday", "tomorrow"),
    ("morning sunrise dawn", "evening night sunset dusk"),
    ("day daytime", "night nighttime"),
    ("north northern", "south southern"),
    ("east eastern", "west western"),
    ("left", "right"),
    ("top", "bottom"),
    ("front", "back rear"),
    ("forward forwards", "backward backwards reverse"),
    ("above over", "below under beneath"),
    ("male", "female"),
    ("man men", "woman women"),
    ("boy", "girl"),
    ("husband", "wife"),
    ("father dad", "mother mom mum"),
    ("son", "daughter"),
    ("brother", "sister"),
    ("king", "queen"),
    ("client", "server"),
    ("frontend", "backend"),
    ("sender", "recipient receiver"),
    ("buyer", "seller"),
    ("employer", "employee"),
    ("landlord", "tenant"),
    ("teacher", "student"),
    ("host", "guest"),
    ("source", "destination"),
    ("odd", "even"),
    ("alive live", "dead"),
    ("awake wake", "asleep"),
    ("love", "hate dislike"),
    ("arrive arrival", "depart departure"),
    ("entry entrance", "exit"),
    ("inflate", "deflate"),
    ("legal lawful", "illegal unlawful"),
    ("possible", "impossible"),
    ("visible", "invisible hidden"),
    ("show display reveal unhide", "hide conceal"),
    ("mature", "immature"),
    ("complete", "incomplete"),
    ("active", "inactive"),
    ("sufficient enough", "insufficient"),
    ("compatible", "incompatible"),
    ("consistent", "inconsistent"),
    ("direct", "indirect"),
    ("dependent", "independent"),
    ("formal", "informal"),
    ("finite", "infinite"),
    ("regular", "irregular"),
    ("polite", "impolite rude"),
    ("patient", "impatient"),
    ("proper", "improper"),
    ("backup back_up", "restore"),
    ("cause", "prevent avoid"),
    ("agree", "disagree"),
    ("include", "ignore"),
    ("remember remembered", "forget forgot forgotten"),
    ("find found", "lose lost"),
    ("trust", "distrust"),
];

/// Verbs whose meaning a particle (`on`, `off`, `in`, `out`, `up`, `down`) completes: `turn
/// 2FA off` is `turn_off`. The particle may follow within [`PARTICLE_REACH`] words.
pub const PHRASAL_VERBS: &[&str] = &[
    "turn", "switch", "power", "shut", "log", "sign", "opt", "plug", "speed", "slow", "set",
    "start", "back", "get", "scale", "zoom", "check",
];

/// Particles of [`PHRASAL_VERBS`] (`into` counts as `in`, `rid` serves `get rid of`).
pub const PARTICLES: &[&str] = &["on", "off", "in", "into", "out", "up", "down", "rid"];

/// Verbs that turn the verb in `-ing` after them around (`stop following` is `unfollow`),
/// as stems.
pub const GERUND_NEGATORS: &[&str] = &["stop", "quit", "ceas"];

/// Verbs that turn around the verb in `-ing` after a later `from` (`stop Edge from accepting
/// cookies`, `keep the cat from scratching`), as stems.
pub const FROM_NEGATORS: &[&str] = &[
    "stop", "prevent", "keep", "block", "ban", "prohibit", "forbid",
];

/// Words skipped between `to` and the word it leads to (`to a string`, `to my bank`).
pub const DETERMINERS: &[&str] = &[
    "a", "an", "the", "my", "your", "our", "their", "his", "her", "its", "this", "that",
];

/// How many words after its verb a particle may come.
pub const PARTICLE_REACH: usize = 3;

/// Prefixes that negate the word they start (`unsubscribe`, `disconnect`, `nonprofit`), for
/// words the axes do not list.
pub const NEGATING_PREFIXES: &[&str] = &["un", "dis", "non"];

/// What remains of a word after a [`NEGATING_PREFIXES`] prefix, when that word is not the
/// negation of the remainder (`undo` is not "not do", `discount` not "not count").
pub const NOT_NEGATED_REMAINDERS: &[&str] = &[
    "do",
    "less",
    "it",
    "its",
    "ion",
    "der",
    "til",
    "ix",
    "cover",
    "play",
    "count",
    "cuss",
    "pose",
    "tance",
    "tribute",
    "trict",
    "miss",
    "ease",
    "able",
    "patch",
    "pute",
    "solve",
    "tinct",
    "cipline",
    "guise",
    "gust",
    "may",
    "mal",
    "sent",
    "aster",
    "close",
    "claim",
    "card",
    "course",
    "ability",
    "abilities",
];

/// Classes of mutually exclusive alternatives: two questions that name different members of
/// a class ask different things (grams or ounces, Monday or Sunday, Python or Java). Each
/// member is a group of synonyms, separated by `|`; words within a group by spaces.
pub const CLASSES: &[&str] = &[
    // Days and months.
    "monday|tuesday|wednesday|thursday|friday|saturday|sunday|weekend",
    "january|february|april|june|july|september|october|november|december",
    "spring|summer|autumn|winter",
    // Units.
    "millisecond ms|second sec|minute min|hour hr|day|week|month|year|decade|century",
    "milligram mg|gram|kilogram kg kilo|pound lb lbs|ounce oz|ton tonne|stone",
    "millimeter millimetre mm|centimeter centimetre cm|meter metre|kilometer kilometre km|\
     inch|foot feet ft|yard|mile",
    "milliliter millilitre ml|liter litre|gallon|quart|pint|cup|tablespoon tbsp|teaspoon tsp",
    "celsius centigrade|fahrenheit|kelvin",
    "bit|byte|kilobyte kb|megabyte mb|gigabyte gb|terabyte tb|petabyte pb",
    "dollar usd|euro eur|pound gbp sterling|yen jpy|yuan renminbi cny rmb|rupee inr|peso|\
     franc chf|ruble rouble|bitcoin btc|ethereum eth",
    // Software.
    "python|javascript js|typescript ts|java|csharp|cpp|rust|golang|ruby|php|kotlin|swift|\
     scala|perl|haskell|elixir|erlang|lua|bash|powershell|dart|julia|matlab|fortran|cobol|\
     clojure|ocaml|zig|html|css|sql",
    "windows|macos mac osx macbook|linux|ubuntu|debian|fedora|centos|android|ios iphone ipad|\
     chromeos|freebsd",
    "chrome|firefox|safari|edge",
    "postgres postgresql|mysql|mariadb|sqlite|mongodb mongo|redis|cassandra|dynamodb|\
     elasticsearch|mssql",
    "aws amazon|azure|gcp",
    "npm|yarn|pnpm|pip|conda|cargo|maven|gradle|homebrew brew|apt|yum|dnf",
    "react|vue|angular|svelte|django|flask|rails|fastapi|laravel|nextjs",
    "vscode|vim|neovim|emacs|intellij|pycharm|xcode",
    "git|svn|mercurial",
    "docker|podman|kubernetes k8s",
    "gmail|outlook|yahoo|protonmail",
    "whatsapp|telegram|signal|slack|discord|teams|zoom|skype",
    // Languages of people.
    "english|spanish|french|german|italian|portuguese|chinese mandarin|cantonese|japanese|\
     korean|russian|arabic|hindi|dutch|swedish|norwegian|danish|finnish|polish|turkish|\
     greek|hebrew|latin|ukrainian|vietnamese|thai|indonesian",
    // Everyday things.
    "breakfast|lunch|dinner supper|brunch",
    "red|yellow|green|blue|purple|pink|brown|gray grey",
    "mercury|venus|earth|mars|jupiter|saturn|uranus|neptune|pluto|moon|sun",
    "dog puppy|cat kitten|horse|cow|pig|sheep|goat|bird parrot|fish|rabbit|hamster|snake|\
     turtle|ferret",
    "rice|pasta noodle spaghetti|potato|egg|butter|milk|cheese|bread|chicken|beef|pork|\
     lamb|salmon|tuna|shrimp|tofu|bean|lentil|quinoa|oat oatmeal|chocolate|grape raisin|\
     apple|banana|orange|strawberry|avocado|onion|garlic|tomato|carrot|broccoli|spinach|\
     coffee|tea|beer|wine|juice|sugar|honey|flour|salt",
    "car|truck|bicycle bike|motorcycle motorbike|bus|train|plane airplane aeroplane|boat|\
     ship|scooter",
    "grandmother grandma|grandfather grandpa|uncle|aunt|cousin|nephew|niece",
];

/// Number words and ordinals, with the value they stand for. `one`, `first`, `a`, `an` are
/// not here: "one pound" and "a pound" ask the same thing.
pub const NUMBER_WORDS: &[(&str, &str)] = &[
    ("zero", "0"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
    ("eleven", "11"),
    ("twelve", "12"),
    ("dozen", "12"),
    ("thirteen", "13"),
    ("fourteen", "14"),
    ("fifteen", "15"),
    ("sixteen", "16"),
    ("seventeen", "17"),
    ("eighteen", "18"),
    ("nineteen", "19"),
    ("twenty", "20"),
    ("thirty", "30"),
    ("forty", "40"),
    ("fifty", "50"),
    ("sixty", "60"),
    ("seventy", "70"),
    ("eighty", "80"),
    ("ninety", "90"),
    ("hundred", "100"),
    ("thousand", "1000"),
    ("million", "1000000"),
    ("billion", "1000000000"),
    ("trillion", "1000000000000"),
    ("second", "2"),
    ("twice", "2"),
    ("double", "2"),
    ("third", "3"),
    ("triple", "3"),
    ("fourth", "4"),
    ("fifth", "5"),
    ("sixth", "6"),
    ("seventh", "7"),
    ("eighth", "8"),
    ("ninth", "9"),
    ("tenth", "10"),
];

/// Words that say little on their own: never an entity, never an axis of their own.
pub const STOPWORDS: &[&str] = &[
    "a",
    "an",
    "the",
    "and",
    "or",
    "but",
    "if",
    "then",
    "so",
    "as",
    "at",
    "by",
    "for",
    "from",
    "in",
    "into",
    "of",
    "on",
    "onto",
    "to",
    "with",
    "about",
    "is",
    "am",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "do",
    "does",
    "did",
    "doing",
    "done",
    "have",
    "has",
    "had",
    "having",
    "i",
    "me",
    "my",
    "mine",
    "myself",
    "you",
    "your",
    "yours",
    "we",
    "our",
    "us",
    "he",
    "him",
    "his",
    "she",
    "her",
    "it",
    "its",
    "they",
    "them",
    "their",
    "this",
    "that",
    "these",
    "those",
    "what",
    "which",
    "who",
    "whom",
    "whose",
    "when",
    "where",
    "why",
    "how",
    "can",
    "could",
    "will",
    "would",
    "shall",
    "should",
    "may",
    "might",
    "must",
    "there",
    "here",
    "some",
    "any",
    "all",
    "each",
    "every",
    "very",
    "just",
    "also",
    "too",
    "please",
    "thanks",
    "thank",
    "hi",
    "hello",
    "hey",
    "ok",
    "okay",
    "user",
    "assistant",
    "way",
    "get",
    "make",
    "want",
    "need",
    "know",
    "tell",
    "explain",
    "help",
    "use",
    "using",
    "one",
    "out",
    "off",
    "up",
    "down",
];
