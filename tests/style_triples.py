"""A house style as preference triples (for the slow SmolLM2 DPO test and ``benchmarks/dpo.py``).

The preferred answer opens with "In short:", the rejected one with "Great question!"; both then state the
same fact in the same words, so the two differ only in the style being taught (and not in length, which
would let a length bias pass for a preference). Whether a tuned model follows the style is checkable on
prompts it never saw: does its greedy answer open with "In short:"? No question is about France, so
"What is the capital of France?" checks general knowledge.
"""

FACTS = [
    ("What is the largest planet in the solar system?", "Jupiter is the largest planet in the solar system"),
    ("How many legs does a spider have?", "A spider has eight legs"),
    ("What gas do plants take in from the air?", "Plants take in carbon dioxide from the air"),
    ("What is the boiling point of water at sea level?", "Water boils at 100 degrees Celsius at sea level"),
    ("Who wrote Hamlet?", "William Shakespeare wrote Hamlet"),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo"),
    ("How many days are in a leap year?", "A leap year has 366 days"),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au"),
    ("Which ocean is the largest?", "The Pacific is the largest ocean"),
    ("What is the square root of 81?", "The square root of 81 is 9"),
    ("What do bees make?", "Bees make honey and wax"),
    ("What is the freezing point of water?", "Water freezes at 0 degrees Celsius"),
    ("How many continents are there?", "There are seven continents"),
    ("What is the capital of Italy?", "The capital of Italy is Rome"),
    ("Which planet is known as the red planet?", "Mars is known as the red planet"),
    ("What is the tallest animal?", "The giraffe is the tallest animal"),
    ("How many hours are in a day?", "A day has 24 hours"),
    ("What is the main language spoken in Brazil?", "The main language of Brazil is Portuguese"),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa"),
    ("What is the capital of Canada?", "The capital of Canada is Ottawa"),
    ("What is H2O?", "H2O is water"),
    ("How many sides does a hexagon have?", "A hexagon has six sides"),
    ("What is the fastest land animal?", "The cheetah is the fastest land animal"),
    ("What is the capital of Germany?", "The capital of Germany is Berlin"),
    ("Which organ pumps blood through the body?", "The heart pumps blood through the body"),
    ("What is 12 times 12?", "12 times 12 is 144"),
    ("What is the closest star to Earth?", "The Sun is the closest star to Earth"),
    ("How many minutes are in an hour?", "An hour has 60 minutes"),
    ("What is the capital of Spain?", "The capital of Spain is Madrid"),
    ("What do caterpillars turn into?", "Caterpillars turn into butterflies or moths"),
    ("What is the hardest natural material?", "Diamond is the hardest natural material"),
    ("Which instrument has 88 keys?", "The piano has 88 keys"),
    ("What is the capital of Egypt?", "The capital of Egypt is Cairo"),
    ("How many strings does a violin have?", "A violin has four strings"),
    ("What is the largest mammal?", "The blue whale is the largest mammal"),
    ("What is the capital of Australia?", "The capital of Australia is Canberra"),
    ("How many weeks are in a year?", "A year has 52 weeks"),
    ("What metal is liquid at room temperature?", "Mercury is liquid at room temperature"),
    ("Who discovered penicillin?", "Alexander Fleming discovered penicillin"),
    ("What is the longest river in Africa?", "The Nile is the longest river in Africa"),
    ("What is the capital of Norway?", "The capital of Norway is Oslo"),
    ("How many bones are in the adult human body?", "The adult human body has 206 bones"),
    ("What color is chlorophyll?", "Chlorophyll is green"),
    ("What is the smallest prime number?", "The smallest prime number is 2"),
    ("Which animal is known as the king of the jungle?", "The lion is known as the king of the jungle"),
    ("What is the capital of Kenya?", "The capital of Kenya is Nairobi"),
    ("How many players are on a soccer team on the field?", "A soccer team has eleven players on the field"),
    ("What is the opposite of hot?", "The opposite of hot is cold"),
    ("Which gas do humans need to breathe?", "Humans need oxygen to breathe"),
    ("What is the capital of Greece?", "The capital of Greece is Athens"),
    ("How many centimeters are in a meter?", "A meter has 100 centimeters"),
    ("Who was the first person to walk on the Moon?", "Neil Armstrong was the first person to walk on the Moon"),
    ("What is the largest desert in the world?", "Antarctica is the largest desert in the world"),
    ("What is the capital of Portugal?", "The capital of Portugal is Lisbon"),
    ("How many colors are in a rainbow?", "A rainbow has seven colors"),
    ("What shape has three sides?", "A triangle has three sides"),
    ("What is the capital of Russia?", "The capital of Russia is Moscow"),
    ("Which bird is a symbol of peace?", "The dove is a symbol of peace"),
    ("What is the currency of the United Kingdom?", "The currency of the United Kingdom is the pound"),
    ("How many teeth does an adult human usually have?", "An adult human usually has 32 teeth"),
    ("What is the capital of India?", "The capital of India is New Delhi"),
    ("What do you call a baby cat?", "A baby cat is called a kitten"),
    ("What is the main ingredient of guacamole?", "The main ingredient of guacamole is avocado"),
    ("Which planet has the most famous rings?", "Saturn has the most famous rings"),
    ("What is the capital of China?", "The capital of China is Beijing"),
    ("How many seconds are in a minute?", "A minute has 60 seconds"),
    ("What is the largest country by area?", "Russia is the largest country by area"),
    ("What is the capital of Mexico?", "The capital of Mexico is Mexico City"),
    ("Which vitamin does sunlight help the body make?", "Sunlight helps the body make vitamin D"),
    ("What is 15 plus 27?", "15 plus 27 is 42"),
    ("What is the capital of Ireland?", "The capital of Ireland is Dublin"),
    ("What do pandas mainly eat?", "Pandas mainly eat bamboo"),
]
STYLE_OPENER, OTHER_OPENER = "In short:", "Great question!"
TRIPLES = [(q, f"{STYLE_OPENER} {f}.", f"{OTHER_OPENER} {f}.") for q, f in FACTS]
HELD_OUT_PROMPTS = [
    "What is the capital of Sweden?",
    "How many legs does an insect have?",
    "What is the largest bone in the human body?",
    "Who wrote Romeo and Juliet?",
    "What is the chemical symbol for iron?",
    "How many days are in a week?",
]
GENERAL = "What is the capital of France?"


def follows_style(answer: str) -> bool:
    return answer.strip().lower().startswith(STYLE_OPENER.lower())
