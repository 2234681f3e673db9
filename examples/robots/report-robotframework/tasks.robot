*** Settings ***
Documentation     Sums a customer's invoices and reports the total to Regente.
...               Variables arrive as environment variables (%{REGENTE_VAR_...}) and
...               as typed JSON in the file named by %{REGENTE_VARIABLES}; lines
...               written with Log To Console follow the Regente robot protocol.

*** Tasks ***
Sum The Invoices
    ${customer}=    Set Variable    %{REGENTE_VAR_CUSTOMER}
    ${invoices}=    Evaluate    json.load(open(os.environ['REGENTE_VARIABLES']))['INVOICES']    modules=json,os
    ${count}=    Get Length    ${invoices}
    Log To Console    summing ${count} invoices of ${customer}
    Log To Console    ::progress::50
    ${total}=    Evaluate    round(sum($invoices), 2)
    IF    ${total} > 500
        Log To Console    ::warning::large total for ${customer}: ${total}
    END
    Log To Console    ::progress::100
    ${result}=    Evaluate    json.dumps({"customer": $customer, "total": $total})    modules=json
    Log To Console    ::return::${result}
